"""Large packages over the memory tree (exchange/large.py): above the inline cap, each
link carries only the signed envelope as a claim on its large lane, the bytes go by
transfer (pushed up by the child, pulled down by the child), and each recipient gets
the exact bytes the sender signed."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.admission_pool import admit_file
from adapters.agency_gate import AgencyGate
from adapters.http_api import build_app
from exchange.admission import Admission, Admitted
from exchange.envelope import open_envelope
from exchange.errors import TransferCorrupt, TransferFailed
from exchange.evidence import EventKind
from exchange.large import CLAIM_HEADER, Spooled
from exchange.links import package_from_envelope, unframe
from exchange.node import Node
from exchange.policy import PRESETS, VerificationPolicy
from exchange.store import Intake
from tests.conftest import example
from tests.pki import DevPki
from tests.unit.memory_blobs import MemoryBlobs
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_http_api import SETTINGS, bearer

COMMUNE_NODE = "commune-21-31-h53"
INLINE = 2048  # bytes: the example documents are larger, so each one is "large" here
CAP = 64 * 1024  # the package cap of the HTTP tests


def make_large(tree: Tree, admission: Admission) -> dict[str, MemoryBlobs]:
    """Every node of the tree with a 2 KiB inline cap, a memory mover, and the streaming
    admission of spooled packages (adapters/admission_pool.py admit_file)."""
    movers = {}
    for name, node in tree.nodes.items():
        node.settings = replace(node.settings, inline_max_bytes=INLINE)
        node.blobs = movers.setdefault(name, MemoryBlobs(name, tree.nodes))

        async def from_file(spooled: Spooled, policy: VerificationPolicy) -> Admitted:
            return await asyncio.to_thread(admit_file, spooled, policy, admission, 1 << 30)

        node._admit_file = from_file
    return movers


def spool(node: Node, data: bytes) -> Spooled:
    folder = node.store.spool_folder()
    assert folder is not None
    path = folder / f"submission-{hashlib.sha256(data).hexdigest()[:12]}"
    path.write_bytes(data)
    return Spooled(path, hashlib.sha256(data).hexdigest(), len(data))


def claims(tree: Tree) -> list[tuple[str, int]]:
    """(queue, body size) of every claim published on a link."""
    return [
        (queue, len(message.body))
        for queue, message in tree.transport.published
        if message.headers.get(CLAIM_HEADER)
    ]


async def test_a_large_package_goes_by_claim_and_transfer_and_arrives_byte_identical(
    tree: Tree, pki: DevPki, admission: Admission
) -> None:
    movers = make_large(tree, admission)
    data = document(pki, COMMUNE, G14, H41, 901)
    assert len(data) > INLINE
    commune = tree.nodes[COMMUNE_NODE]
    answer = await commune.handle_spooled(spool(commune, data), user_id=None)
    assert (answer.outcome, answer.level) == ("accepted", "strict")
    for organ in (G14, H41):
        (message_id,) = await tree.wait(organ)
        assert message_id == answer.message_id
    for organ, home in ((G14, "central"), (H41, "province-h41")):
        (entry,) = await tree.nodes[home].store.mailbox(organ, unfetched_only=True, limit=5)
        assert await tree.nodes[home].store.package_bytes(entry.digest) == data
    digest = hashlib.sha256(data).hexdigest()
    # up: commune -> district -> province -> central, each child pushing to its parent;
    # down: central -> province-h41, the child pulling
    assert movers[COMMUNE_NODE].pushed == [digest]
    assert movers["district-31-h53"].pushed == [digest]
    assert movers["province-h53"].pushed == [digest]
    assert movers["province-h41"].pulled == [digest]
    sent = claims(tree)
    assert len(sent) == 4, sent  # one claim per link crossed
    assert all(queue.endswith(".large") for queue, _ in sent)
    assert all(size < len(data) for _, size in sent), "no claim carries the package"
    for _, message in tree.transport.published:
        if message.headers.get(CLAIM_HEADER):
            assert unframe(message.body)[1] == b""
    assert not list(commune.store.spool_folder().iterdir())  # type: ignore[union-attr]


async def test_an_urgent_small_package_is_not_held_up_by_a_large_one_waiting(
    tree: Tree, pki: DevPki, admission: Admission
) -> None:
    make_large(tree, admission)
    commune = tree.nodes[COMMUNE_NODE]
    stuck = commune.blobs
    assert isinstance(stuck, MemoryBlobs)
    gate = asyncio.Event()
    real_push = stuck.push

    async def slow_push(parent: str, path: Path, digest: str, size: int) -> None:
        await gate.wait()  # a transfer that takes its time
        await real_push(parent, path, digest, size)

    stuck.push = slow_push  # type: ignore[method-assign]
    large = document(pki, COMMUNE, G14, H41, 902)
    big = await commune.handle_spooled(spool(commune, large), user_id=None)
    small_cap = replace(commune.settings, inline_max_bytes=10 * 1024 * 1024)
    commune.settings = small_cap  # the next one is inline
    urgent = await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, 903))
    assert urgent.outcome == "accepted"
    arrived = await tree.wait(G14, 1)
    assert arrived == [urgent.message_id], "the small one arrived while the large one waits"
    gate.set()
    arrived = await tree.wait(G14, 2)
    assert set(arrived) == {urgent.message_id, big.message_id}


async def test_a_large_package_to_a_node_without_transfers_is_refused_by_name(
    tree: Tree, pki: DevPki
) -> None:
    commune = tree.nodes[COMMUNE_NODE]
    commune.settings = replace(commune.settings, inline_max_bytes=INLINE)
    data = document(pki, COMMUNE, G14, H41, 904)
    spooled = spool(commune, data)
    with pytest.raises(Exception, match="inline cap of 2048 bytes") as refused:
        await commune.handle_spooled(spooled, user_id=None)
    assert getattr(refused.value, "code", None) == "package.too_large"
    assert not spooled.path.exists()


@pytest.fixture
async def commune_face(tree: Tree) -> AsyncIterator[TestClient]:
    """The commune node's REST API with a 2 KiB inline cap and a 64 KiB package cap."""
    node = tree.nodes[COMMUNE_NODE]
    node.settings = replace(
        node.settings,
        http_credentials={f"http:{n}": c.credential for n, c in SETTINGS.clients.items()},
    )
    app = build_app(
        AgencyGate(node, dry_run=node._admit), SETTINGS, max_bytes=CAP, inline_bytes=INLINE
    )
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_a_large_submission_over_http_is_spooled_and_delivered(
    tree: Tree, pki: DevPki, commune_face: TestClient, admission: Admission
) -> None:
    make_large(tree, admission)
    data = document(pki, COMMUNE, G14, H41, 905)
    sent = await commune_face.post("/v1/packages", data=data, headers=bearer("commune"))
    assert sent.status == 201, await sent.text()
    answer = await sent.json()
    assert (await tree.wait(G14)) == [answer["message_id"]]
    spool_folder = tree.nodes[COMMUNE_NODE].store.spool_folder()
    assert spool_folder is not None
    assert not list(spool_folder.iterdir()), "nothing left in the spool"


async def test_a_body_over_the_cap_is_refused_before_it_is_read(
    tree: Tree, commune_face: TestClient, admission: Admission
) -> None:
    make_large(tree, admission)
    declared = await commune_face.post(
        "/v1/packages", data=b"<" + b"x" * (CAP + 1), headers=bearer("commune")
    )
    problem = await declared.json()
    assert (declared.status, problem["code"]) == (413, "package.too_large")
    assert f"the cap is {CAP}" in problem["detail"]
    sent = 0

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to go by
        nonlocal sent
        while sent < 100 * CAP:
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    streamed = await commune_face.post("/v1/packages", data=endless(), headers=bearer("commune"))
    problem = await streamed.json()
    assert (streamed.status, problem["code"]) == (413, "package.too_large")
    assert f"over the cap of {CAP} bytes" in problem["detail"]  # judged as the bytes passed it
    spool_folder = tree.nodes[COMMUNE_NODE].store.spool_folder()
    assert spool_folder is not None
    assert not list(spool_folder.iterdir()), "the partial spool is gone"


async def test_a_held_large_package_released_goes_by_claim_too(
    tree: Tree, admission: Admission
) -> None:
    movers = make_large(tree, admission)
    commune = tree.nodes[COMMUNE_NODE]
    commune.settings = replace(commune.settings, sources={"amqp": PRESETS["quarantine"]})
    unsigned = (
        example("document-new.edxml")
        .replace(b"000.00.00.H53", G14.encode())
        .replace(b"000.21.31.H53", H41.encode())
        .replace(b"000.00.00.G22", COMMUNE.encode())
    )
    assert len(unsigned) > INLINE
    held = await commune.handle_spooled(spool(commune, unsigned), user_id=None)
    assert held.level == "quarantined"
    await commune.decide_quarantined(held.message_id, "released", by="ops-an")
    assert await tree.wait(G14) == [held.message_id]
    assert movers[COMMUNE_NODE].pushed == [hashlib.sha256(unsigned).hexdigest()]


async def _failed_reasons(node: Node, message_id: str) -> dict[str, str]:
    """Recipient -> reason of the failed events this node knows of for a package."""
    return {
        str(e.party): str(e.detail["reason"])
        for e in await node.store.events_about(message_id=message_id)
        if e.kind is EventKind.FAILED
    }


async def test_a_transfer_that_cannot_complete_fails_the_copy_with_its_reason(
    tree: Tree, pki: DevPki, admission: Admission
) -> None:
    movers = make_large(tree, admission)

    async def refused(parent: str, path: Path, digest: str, size: int) -> None:
        raise TransferFailed(f"pushing {digest[:12]}… to {parent}: gave up after 3 attempts")

    movers[COMMUNE_NODE].push = refused  # type: ignore[method-assign]
    commune = tree.nodes[COMMUNE_NODE]
    sent = await commune.handle_spooled(
        spool(commune, document(pki, COMMUNE, G14, H41, 906)), user_id=None
    )
    async with asyncio.timeout(20):
        while len(reasons := await _failed_reasons(commune, sent.message_id)) < 2:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert set(reasons) == {G14, H41}
    assert all("could not be sent to district-31-h53" in r for r in reasons.values())
    assert all("gave up after 3 attempts" in r for r in reasons.values())
    assert await tree.mailbox(G14) == []


async def test_bytes_that_cannot_be_pulled_dead_letter_the_claim_and_tell_the_sender(
    tree: Tree, pki: DevPki, admission: Admission
) -> None:
    movers = make_large(tree, admission)

    async def corrupt(parent: str, digest: str, size: int) -> Path:
        raise TransferCorrupt(f"the bytes from {parent} do not hash to {digest[:12]}…")

    movers["province-h41"].pull = corrupt  # type: ignore[method-assign]
    commune = tree.nodes[COMMUNE_NODE]
    sent = await commune.handle_spooled(
        spool(commune, document(pki, COMMUNE, G14, H41, 907)), user_id=None
    )
    await tree.wait(G14)  # the other recipient's copy is not held up
    async with asyncio.timeout(20):
        while H41 not in (reasons := await _failed_reasons(commune, sent.message_id)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    assert "do not hash to" in reasons[H41]
    assert "at node province-h41" in reasons[H41]
    (letter,) = await tree.nodes["province-h41"].store.dead_letters()
    assert "do not hash to" in letter.reason
    assert await tree.mailbox(H41) == []


async def test_a_claim_taken_again_finds_the_bytes_an_earlier_intake_took_over(
    tree: Tree, pki: DevPki, admission: Admission
) -> None:
    """The push was renamed into the store, then the commit did not happen (a crash, a
    locked database): the claim comes again and its bytes are found in the store."""
    make_large(tree, admission)
    commune = tree.nodes[COMMUNE_NODE]
    data = document(pki, COMMUNE, G14, H41, 908)
    sent = await commune.handle_spooled(spool(commune, data), user_id=None)
    await tree.wait(G14)
    central = tree.nodes["central"]
    wire = await central.store.envelope(sent.message_id)
    envelope = open_envelope(wire, None, central.peer_keys)
    found = await central._claimed_bytes(envelope, "province-h53")
    assert found.read_bytes() == data
    again = await central.store.commit_intake(
        Intake(
            message_id="again",
            package=package_from_envelope(envelope),
            data=found,  # the store's own file: kept, not removed
            source="link:province-h53",
            envelope=wire,
            outbox=(),
            received_at=datetime.now(UTC),
            key=f"message:{envelope.message_id}",
        )
    )
    assert again.outcome.value == "duplicate"
    assert await central.store.package_bytes(envelope.sha256) == data
