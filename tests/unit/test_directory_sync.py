"""The signed directory: one document, signed at the root, kept and passed down the tree;
forged, broken, older or sideways copies refused while the node keeps what it has."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admission, Admitted, admit
from exchange.directory_doc import newer, open_directory, sign_directory
from exchange.directory_sync import DIRECTORY, KIND_HEADER
from exchange.envelope import NodeKey
from exchange.errors import ConfigurationError, DirectoryRefused, DirectoryStale
from exchange.links import down_queue, up_queue
from exchange.node import Answer, DirectoryKeeping, Node, NodeSettings
from exchange.policy import VerificationPolicy
from exchange.signing import sign
from exchange.transport import Message
from tests.conftest import example
from tests.pki import G22, DevPki
from tests.unit.memory_tree import submit_to
from tests.unit.test_topology import HOMES, PARENTS

NEW_COMMUNE = "000.23.31.H53"  # added in version 2, on the commune's own node


def content(version: int, homes: Mapping[str, str] = HOMES) -> dict[str, Any]:
    return {
        "version": version,
        "node": [{"id": n, **({"parent": p} if p else {})} for n, p in PARENTS.items()],
        "agency": [{"organ_id": o, "home_node": h} for o, h in homes.items()],
    }


KEYS = {n: NodeKey(n, ec.generate_private_key(ec.SECP256R1())) for n in PARENTS}
PUBLIC = {n: k.key.public_key() for n, k in KEYS.items()}


# --- the document ---------------------------------------------------------------------


def test_a_signed_directory_opens_with_the_roots_key_only() -> None:
    wire = sign_directory(content(3), KEYS["central"])
    signed = open_directory(wire, PUBLIC, "central")
    assert (signed.version, signed.signer) == (3, "central")
    assert signed.directory.get("000.00.00.H41") is not None
    assert signed.directory.topology().parents["commune-21-31-h53"] == "district-31-h53"
    forged = sign_directory(content(4), KEYS["province-h53"])
    with pytest.raises(DirectoryRefused, match="signed by node province-h53, but only central"):
        open_directory(forged, PUBLIC, "central")


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"version = 1\n", "not JSON"),
        (json.dumps({"kind": "lienthong-directory", "v": 1}).encode(), "is not signed"),
        (b'{"kind": "something else"}', "not a lienthong directory"),
    ],
)
def test_unsigned_or_foreign_documents_are_refused(wire: bytes, message: str) -> None:
    with pytest.raises(DirectoryRefused, match=message):
        open_directory(wire, PUBLIC, "central")


def test_a_changed_byte_breaks_the_signature() -> None:
    wire = sign_directory(content(3), KEYS["central"])
    tampered = wire.replace(b'"province-h41"', b'"province-h53"', 1)
    with pytest.raises(DirectoryRefused, match="does not verify"):
        open_directory(tampered, PUBLIC, "central")


def test_only_a_newer_version_replaces_the_kept_one() -> None:
    v2 = open_directory(sign_directory(content(2), KEYS["central"]), PUBLIC, "central")
    v3 = open_directory(sign_directory(content(3), KEYS["central"]), PUBLIC, "central")
    assert newer(None, v2)
    assert newer(v2, v3)
    assert not newer(v3, v3)  # the same document again: nothing to do
    with pytest.raises(DirectoryStale, match=r"v2 .* is not newer than v3"):
        newer(v3, v2)
    other_v3 = open_directory(sign_directory(content(3, {}), KEYS["central"]), PUBLIC, "central")
    with pytest.raises(DirectoryStale):
        newer(v3, other_v3)  # same version, other content


def test_a_broken_directory_is_refused_before_it_is_signed() -> None:
    broken = content(2)
    broken["agency"].append({"organ_id": "000.00.00.G22", "home_node": "central"})
    with pytest.raises(ConfigurationError, match="listed twice"):
        sign_directory(broken, KEYS["central"])


# --- along the tree -------------------------------------------------------------------


class MemoryHome:
    def __init__(self, wire: bytes) -> None:
        self.wire = wire  # the kept version
        self.next: bytes | None = None  # the root's operator's next one
        self.writes = 0

    async def read_next(self) -> bytes | None:
        return self.next

    async def write(self, wire: bytes) -> None:
        self.wire = wire
        self.writes += 1


@dataclass
class Tree:
    nodes: dict[str, Node]
    homes: dict[str, MemoryHome]
    transport: MemoryTransport

    def versions(self) -> dict[str, int]:
        return {n: node.directory_sync.version for n, node in self.nodes.items()}  # type: ignore[union-attr]

    async def until(self, version: int) -> None:
        async with asyncio.timeout(10):
            while set(self.versions().values()) != {version}:  # noqa: ASYNC110 - polls nodes
                await asyncio.sleep(0.02)


@pytest.fixture
async def tree(tmp_path: Path, admission: Admission) -> AsyncIterator[Tree]:
    transport = MemoryTransport()
    v1 = sign_directory(content(1), KEYS["central"])
    kept = open_directory(v1, PUBLIC, "central")
    homes = {n: MemoryHome(v1) for n in PARENTS}

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    async def reload() -> None:
        return None

    nodes = {
        name: Node(
            NodeSettings(
                name,
                hosted=kept.directory.hosted_by(name),
                parent=parent,
                topology=kept.directory.topology(),
                relay_idle_s=0.05,
            ),
            store=SqliteStore(tmp_path / name),
            transport=transport,
            admit=run_admission,
            node_key=KEYS[name],
            peer_keys=PUBLIC,
            directory=DirectoryKeeping(homes[name], kept, "central", reload, check_every_s=0.05),
        )
        for name, parent in PARENTS.items()
    }
    for node in nodes.values():
        await node.store.migrate()
        await node.declare()
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(node.run()) for node in nodes.values()]
        yield Tree(nodes, homes, transport)
        for task in tasks:
            task.cancel()
    for node in nodes.values():
        await node.store.close()


async def submit(tree: Tree, node: str, data: bytes) -> Answer:
    return await submit_to(tree.transport, tree.nodes[node], data)


async def test_a_new_version_at_the_root_reaches_every_node_and_routes(
    tree: Tree, pki: DevPki
) -> None:
    to_new = example("document-new.edxml").replace(b"000.21.31.H53", NEW_COMMUNE.encode())
    before = await submit(tree, "central", sign(to_new, pki.key(G22)))
    assert (before.outcome, before.unreachable) == ("accepted", (NEW_COMMUNE,))  # H53 got it

    # the root's operator signs version 2, which adds a commune on the commune node
    v2 = sign_directory(content(2, {**HOMES, NEW_COMMUNE: "commune-21-31-h53"}), KEYS["central"])
    tree.homes["central"].next = v2
    await tree.until(2)
    assert {n: h.wire == v2 for n, h in tree.homes.items()} == dict.fromkeys(PARENTS, True)
    assert {h.writes for h in tree.homes.values()} == {1}  # each kept it once, root included
    assert NEW_COMMUNE in tree.nodes["commune-21-31-h53"].settings.hosted

    again = sign(to_new.replace(b"125/UBND-VP<", b"126/UBND-VP<"), pki.key(G22))
    answer = await submit(tree, "central", again)
    assert (answer.outcome, answer.unreachable) == ("accepted", None), answer
    node = tree.nodes["commune-21-31-h53"]
    async with asyncio.timeout(10):
        while not await node.store.mailbox(NEW_COMMUNE, unfetched_only=False, limit=10):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_forged_older_and_sideways_directories_are_refused(tree: Tree) -> None:
    tree.homes["central"].next = sign_directory(content(2), KEYS["central"])
    await tree.until(2)
    district = tree.nodes["district-31-h53"]
    home = tree.homes["district-31-h53"]
    assert home.writes == 1

    async def offer(queue: str, wire: bytes) -> None:
        await tree.transport.publish(
            queue, Message(wire, headers={KIND_HEADER: DIRECTORY}), timeout=5
        )

    from_parent = down_queue("province-h53", "district-31-h53", "directory")
    # sideways: a child may not hand its parent a directory, even a well-signed newer one
    sideways = up_queue("district-31-h53", "normal")
    await offer(sideways, sign_directory(content(5), KEYS["central"]))
    # forged: signed by the province, not the root, with a higher version
    await offer(from_parent, sign_directory(content(9, {}), KEYS["province-h53"]))
    # older: version 1, properly signed by the root, replayed
    await offer(from_parent, sign_directory(content(1), KEYS["central"]))
    # one that would move the district under another parent: refused, not half applied
    moved = content(4)
    moved["node"] = [
        {"id": n, **({"parent": "central" if n == "district-31-h53" else p} if p else {})}
        for n, p in PARENTS.items()
    ]
    await offer(from_parent, sign_directory(moved, KEYS["central"]))
    # then a good one, on the same lane, after them: all before it were taken and refused
    v3 = sign_directory(content(3), KEYS["central"])
    await offer(from_parent, v3)
    async with asyncio.timeout(10):
        while district.directory_sync.version != 3 or tree.transport.depth(sideways):  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert district.directory_sync.version == 3  # type: ignore[union-attr]
    assert (home.wire, home.writes) == (v3, 2)  # v2 and v3 kept; nothing else ever written
    assert district.settings.topology is not None
    assert district.settings.topology.parents["district-31-h53"] == "province-h53"
    assert district.settings.hosted == frozenset({"000.00.31.H53", "000.20.31.H53"})


async def test_a_node_behind_waits_for_the_version_a_package_was_routed_by(
    tree: Tree, pki: DevPki
) -> None:
    """A package routed by v2 reaches a node still on v1: it waits, and is not lost."""
    commune = tree.nodes["commune-21-31-h53"]
    sync = commune.directory_sync
    assert sync is not None
    gate, taken = asyncio.Event(), sync.offer

    async def slow_offer(wire: bytes, *, came_from: str) -> str:  # the directory is late
        await gate.wait()
        return await taken(wire, came_from=came_from)

    sync.offer = slow_offer  # type: ignore[method-assign]
    v2 = sign_directory(content(2, {**HOMES, NEW_COMMUNE: "commune-21-31-h53"}), KEYS["central"])
    tree.homes["central"].next = v2
    async with asyncio.timeout(10):
        while tree.nodes["district-31-h53"].directory_sync.version != 2:  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    to_new = example("document-new.edxml").replace(b"000.21.31.H53", NEW_COMMUNE.encode())
    answer = await submit(tree, "central", sign(to_new, pki.key(G22)))
    assert (answer.outcome, answer.unreachable) == ("accepted", None)
    await asyncio.sleep(0.5)  # it reaches the commune node, which is still on v1: it waits
    assert await commune.store.mailbox(NEW_COMMUNE, unfetched_only=False, limit=10) == []
    assert sync.version == 1
    gate.set()  # the directory arrives: the commune takes it, then the package lands
    async with asyncio.timeout(20):
        while not await commune.store.mailbox(NEW_COMMUNE, unfetched_only=False, limit=10):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert sync.version == 2
