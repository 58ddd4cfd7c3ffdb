"""A node on a three-node RabbitMQ cluster with quorum queues, under steady load, while
the broker node leading its inbound queue is killed and restarted, and another broker
node is frozen (SIGSTOP) past net_ticktime, a partition. The ledger holds and the node
process never exits: it reconnects by itself, to whichever broker node answers.

On demand only (a cluster takes ~25 s to form here; the full run ~3 minutes):
    python -m pytest -m ondemand tests/chaos/test_cluster.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.client import NodeClient
from adapters.transport_amqp import AmqpTransport
from tests.chaos.rabbit_cluster import NET_TICKTIME_S, RabbitCluster, available
from tests.integration.harness import AMQP_URL, COMMUNE, G22, H53, NodeProcess

pytestmark = [
    pytest.mark.ondemand,
    pytest.mark.integration,
    pytest.mark.skipif(not available(), reason="RabbitMQ is not installed here"),
]

RATE_PER_S = 20
WORKERS = 4
RECIPIENTS = (H53, COMMUNE)


@dataclass
class Load:
    """Clients submitting distinct signed documents, each retried until it is answered."""

    node: NodeProcess
    urls: list[str]
    accepted: dict[str, str] = field(default_factory=dict)  # digest -> outcome
    refused: list[str] = field(default_factory=list)
    retries: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1000))

    def document(self) -> bytes:
        n = next(self.numbers)
        return self.node.signed(
            "document-new.edxml",
            **{"125/UBND-VP": f"{n}/UBND-VP", "<edXML:CodeNumber>125<": f"<edXML:CodeNumber>{n}<"},
        )

    async def worker(self) -> None:
        pause = WORKERS / RATE_PER_S
        async with NodeClient(self.urls, self.node.node_id, timeout_s=8) as client:
            while not self.stop.is_set():
                began = time.monotonic()
                data = await asyncio.to_thread(self.document)
                while True:  # the same bytes until answered: a retry is a duplicate at most
                    try:
                        (answer,) = await client.submit([data], as_organ=G22)
                        break
                    except Exception:  # any failure is retried, and counted
                        self.retries += 1
                        await asyncio.sleep(0.5)
                digest = hashlib.sha256(data).hexdigest()
                if answer.outcome in ("accepted", "duplicate"):
                    self.accepted[digest] = answer.outcome
                else:
                    self.refused.append(f"{answer.outcome} {answer.code} {answer.reason}")
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - began)))

    async def run_while(self, faults: asyncio.Task[None]) -> None:
        workers = [asyncio.create_task(self.worker()) for _ in range(WORKERS)]
        try:
            await faults
        finally:
            self.stop.set()
            async with asyncio.timeout(120):
                await asyncio.gather(*workers)


async def _inbound_consumed(urls: list[str], queue: str, timeout_s: float = 90) -> None:
    transport = AmqpTransport(urls)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(Exception):
                    info = await transport.inspect(queue)
                    if info is not None and info.consumers >= 1:
                        return
                await asyncio.sleep(0.5)
    finally:
        await transport.close()


def _cluster_node(folder: Path, urls: list[str]) -> NodeProcess:
    node = NodeProcess(folder)
    text = node.config.read_text()
    assert f'url = "{AMQP_URL}"' in text
    listed = ", ".join(f'"{u}"' for u in urls)
    node.config.write_text(text.replace(f'url = "{AMQP_URL}"', f"url = [{listed}]\nquorum = true"))
    return node


async def _ledger(node: NodeProcess, accepted: dict[str, str], timeout_s: float = 90) -> None:
    """Every accepted package in each recipient's mailbox exactly once, nothing else."""
    deadline = time.monotonic() + timeout_s
    for organ in RECIPIENTS:
        while True:
            found = await node.mailbox_digests(organ)
            if set(accepted) <= set(found) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        missing = set(accepted) - set(found)
        assert not missing, f"{organ}: {len(missing)} accepted package(s) never arrived"
        assert len(found) == len(set(found)), f"{organ}: a package is in the mailbox twice"
        stray = set(found) - set(accepted)
        assert not stray, f"{organ}: {len(stray)} package(s) delivered that were not accepted"


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", ["quick", "full"])
async def test_a_node_rides_out_a_leader_kill_and_a_partition(
    tmp_path: Path, scenario: str
) -> None:
    with RabbitCluster(3) as cluster:
        print(f"\ncluster formed in {cluster.timings['cluster_formed_s']:.1f} s")
        urls = cluster.urls()
        node = _cluster_node(tmp_path, urls)
        inbound = f"lienthong.{node.node_id}.inbound"
        process = node.start()
        try:
            await _inbound_consumed(urls, inbound)
            load = Load(node, urls)

            async def faults() -> None:
                await asyncio.sleep(5)
                leader = cluster.leader_of(inbound)
                cluster.kill(leader)
                await asyncio.sleep(20 if scenario == "full" else 8)
                await asyncio.to_thread(cluster.start, leader)
                if scenario == "full":
                    other = (leader + 1) % len(cluster.nodes)
                    cluster.freeze(other)
                    await asyncio.sleep(2 * NET_TICKTIME_S)
                    cluster.thaw(other)
                    await asyncio.to_thread(cluster.heal, other, 10.0)
                await asyncio.sleep(5)

            await load.run_while(asyncio.create_task(faults()))
            await _ledger(node, load.accepted)
            kinds = [what for _, what, _ in cluster.faults]
            duplicates = sum(o == "duplicate" for o in load.accepted.values())
            print(
                f"{scenario}: faults {kinds}; packages accepted {len(load.accepted)} "
                f"(answered duplicate on a retry: {duplicates}), "
                f"client retries {load.retries}, refused {len(load.refused)}"
            )
            assert not load.refused, load.refused[:3]
            assert process.poll() is None, "the node process exited: it did not reconnect by itself"
        finally:
            node.stop()
            log = tmp_path / "node.log"
            if log.exists():
                text = log.read_text(errors="replace")
                print("node log:", text.count("rabbitmq.reconnected"), "reconnects")
                if "Traceback" in text:
                    at = text.index("Traceback")
                    print(text[max(0, at - 500) : at + 3000])
