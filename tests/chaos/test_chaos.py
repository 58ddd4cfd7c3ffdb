"""The chaos suite: the sandbox tree as separate processes under steady load, with faults
injected on a recorded schedule, then the ledger checked (tests/chaos/ledger.py).

- ``test_quick_chaos``: the CI cut, under two minutes, every kind of fault at least once.
- ``test_long_chaos``: on demand, on one broker node: ``LIENTHONG_CHAOS_MINUTES`` (35),
  ``LIENTHONG_CHAOS_RATE`` (packages/s, 60), ``LIENTHONG_CHAOS_FAULT_EVERY_S`` (15).
- ``test_cluster_chaos``: on demand, the same tree on a three-node RabbitMQ cluster with
  quorum queues, its leaders killed and its nodes partitioned:
  ``LIENTHONG_CHAOS_CLUSTER_MINUTES`` (8).

The long run is all three: ``scripts/test -m ondemand tests/chaos -s`` (docs/reliability.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.rabbit_cluster import available
from tests.chaos.run import Plan, chaos_run, describe

pytestmark = pytest.mark.integration


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@pytest.mark.timeout(420)
async def test_quick_chaos(tmp_path: Path) -> None:
    plan = Plan("quick", seconds=50, rate=12, fault_every_s=7, drain_s=150)
    report, findings = await chaos_run(tmp_path, plan)
    print(describe(report, findings))
    assert set(report.faults) == {"kill", "link", "enospc", "rabbitmq", "postgres"}
    assert report.packages_sent > 0.7 * plan.rate * plan.seconds, "the load ran"
    assert findings.holds, describe(report, findings)
    assert report.ok(), describe(report, findings)


@pytest.mark.ondemand
@pytest.mark.timeout(4 * 3600)
async def test_long_chaos(tmp_path: Path) -> None:
    plan = Plan(
        "long",
        seconds=_env("LIENTHONG_CHAOS_MINUTES", 35) * 60,
        rate=_env("LIENTHONG_CHAOS_RATE", 60),
        fault_every_s=_env("LIENTHONG_CHAOS_FAULT_EVERY_S", 15),
        drain_s=600,
    )
    report, findings = await chaos_run(tmp_path, plan)
    print(describe(report, findings))
    assert findings.holds, describe(report, findings)
    assert report.ok(), describe(report, findings)


@pytest.mark.ondemand
@pytest.mark.timeout(2 * 3600)
@pytest.mark.skipif(not available(), reason="RabbitMQ is not installed here")
async def test_cluster_chaos(tmp_path: Path) -> None:
    plan = Plan(
        "cluster",
        seconds=_env("LIENTHONG_CHAOS_CLUSTER_MINUTES", 8) * 60,
        rate=_env("LIENTHONG_CHAOS_RATE", 60) / 2,  # quorum queues on two cores: half
        fault_every_s=_env("LIENTHONG_CHAOS_FAULT_EVERY_S", 15) * 2,
        drain_s=600,
        cluster=True,
    )
    report, findings = await chaos_run(tmp_path, plan)
    print(describe(report, findings))
    assert {"leader", "partition"} <= set(report.faults)
    assert findings.holds, describe(report, findings)
    assert report.ok(), describe(report, findings)
