"""The chaos suite: the sandbox tree as separate processes under steady load, with faults
injected on a recorded schedule, then the ledger checked (tests/chaos/ledger.py).

- ``test_quick_chaos``: the CI cut, about two minutes, every kind of fault at least once.
- ``test_long_chaos``: on demand; ``LIENTHONG_CHAOS_MINUTES`` (30), ``LIENTHONG_CHAOS_RATE``
  (packages/s, 60) and ``LIENTHONG_CHAOS_FAULT_EVERY_S`` (15) size it:
  ``scripts/test -m ondemand tests/chaos/test_chaos.py -s``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.run import Plan, chaos_run, describe

pytestmark = pytest.mark.integration


@pytest.mark.timeout(420)
async def test_quick_chaos(tmp_path: Path) -> None:
    plan = Plan("quick", seconds=75, rate=12, fault_every_s=10, drain_s=150)
    report, findings = await chaos_run(tmp_path, plan)
    print(describe(report, findings))
    assert set(report.faults) == {"kill", "link", "enospc", "rabbitmq", "postgres"}
    assert report.packages_sent > 0.8 * plan.rate * plan.seconds, "the load ran"
    assert findings.holds, describe(report, findings)
    assert report.ok(), describe(report, findings)


@pytest.mark.ondemand
@pytest.mark.timeout(4 * 3600)
async def test_long_chaos(tmp_path: Path) -> None:
    minutes = float(os.environ.get("LIENTHONG_CHAOS_MINUTES", "30"))
    plan = Plan(
        "long",
        seconds=minutes * 60,
        rate=float(os.environ.get("LIENTHONG_CHAOS_RATE", "60")),
        fault_every_s=float(os.environ.get("LIENTHONG_CHAOS_FAULT_EVERY_S", "15")),
        drain_s=600,
    )
    report, findings = await chaos_run(tmp_path, plan)
    print(describe(report, findings))
    assert findings.holds, describe(report, findings)
    assert report.ok(), describe(report, findings)
