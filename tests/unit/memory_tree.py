"""Five nodes on the in-memory broker, each with its own store and key (the ``tree``
fixture, registered in tests/unit/conftest.py), and helpers to drive them."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admission, Admitted, admit
from exchange.devpki import issue
from exchange.directory_sync import KIND_HEADER
from exchange.envelope import NodeKey
from exchange.node import Answer, Node, NodeSettings
from exchange.policy import VerificationPolicy
from exchange.reporting import REPORTS
from exchange.signing import SigningKey, sign
from exchange.topology import Topology
from exchange.transport import Message, QueueSpec
from tests.conftest import example
from tests.pki import DevPki
from tests.unit.test_topology import HOMES, PARENTS

COMMUNE, H41, G14 = "000.21.31.H53", "000.00.00.H41", "000.00.00.G14"
OLD_H41, NOWHERE = "000.00.00.H99", "000.00.00.H37"


async def submit_to(transport: MemoryTransport, node: Node, data: bytes) -> Answer:
    """Submit to a node on the in-memory broker, as an agency would, and read its answer."""
    await transport.declare(QueueSpec("lienthong.reply.answers"))
    await transport.publish(
        node.queues.inbound,
        Message(data, reply_to="lienthong.reply.answers", message_id="c-1"),
        timeout=5,
    )
    replies = transport.consume("lienthong.reply.answers", prefetch=1)
    delivery = await asyncio.wait_for(anext(replies), timeout=10)
    await delivery.ack()
    await replies.aclose()
    return Answer.decode(delivery.message.body)


@dataclass
class Tree:
    nodes: dict[str, Node]
    transport: MemoryTransport

    async def submit(self, node: str, data: bytes) -> Answer:
        return await submit_to(self.transport, self.nodes[node], data)

    async def mailbox(self, organ: str) -> list[str]:
        node = self.nodes[HOMES[organ]]
        return [
            e.message_id for e in await node.store.mailbox(organ, unfetched_only=False, limit=100)
        ]

    async def wait(self, organ: str, count: int = 1) -> list[str]:
        """The mailbox once it holds ``count`` packages; a deadline, not a guess."""
        async with asyncio.timeout(20):
            while len(found := await self.mailbox(organ)) < count:  # noqa: ASYNC110 - polls a store
                await asyncio.sleep(0.05)
        return found

    def publishes_per_link(self) -> Counter[str]:
        """Package copies published on each link lane (report batches left out)."""
        return Counter(
            q
            for q, m in self.transport.published
            if q.startswith("lienthong.link.") and m.headers.get(KIND_HEADER) != REPORTS
        )


@pytest.fixture
async def tree(tmp_path: Path, pki: DevPki, admission: Admission) -> AsyncIterator[Tree]:
    transport = MemoryTransport()
    topology = Topology(PARENTS, HOMES, redirects={OLD_H41: H41})  # a merged agency's old code
    keys = {n: NodeKey(n, ec.generate_private_key(ec.SECP256R1())) for n in PARENTS}
    public = {n: k.key.public_key() for n, k in keys.items()}

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    nodes = {}
    for name, parent in PARENTS.items():
        nodes[name] = Node(
            NodeSettings(
                name,
                hosted=frozenset(o for o, home in HOMES.items() if home == name),
                parent=parent,
                topology=topology,
                relay_idle_s=0.05,
            ),
            store=SqliteStore(tmp_path / name),
            transport=transport,
            admit=run_admission,
            node_key=keys[name],
            peer_keys=public,
        )
    for node in nodes.values():
        await node.store.migrate()
        await node.declare()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(node.run()) for node in nodes.values()]
        yield Tree(nodes, transport)
        for task in tasks:
            task.cancel()
    for node in nodes.values():
        await node.store.close()


def key_of(pki: DevPki, organ: str) -> SigningKey:
    if organ not in pki.agencies:
        pki.agencies[organ] = issue(pki.ca, organ)
    return pki.key(organ)


def document(pki: DevPki, sender: str, first: str, second: str, number: int = 125) -> bytes:
    data = example("document-new.edxml").replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
    data = data.replace(b"000.00.00.H53", first.encode()).replace(b"000.21.31.H53", second.encode())
    return sign(data.replace(b"000.00.00.G22", sender.encode()), key_of(pki, sender))
