"""Five nodes on the in-memory broker (tests/unit/memory_tree.py), each with its own store
and key: packages cross the tree hop by hop, one copy per link, and land once in every
mailbox."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admission, Admitted, admit
from exchange.envelope import NodeKey, open_envelope
from exchange.errors import TransientFault
from exchange.links import frame, up_queue
from exchange.node import Node, NodeSettings
from exchange.policy import VerificationPolicy
from exchange.signing import sign
from exchange.store import Intake, IntakeResult
from exchange.topology import Topology
from exchange.transport import Delivery, Message
from tests.conftest import example
from tests.pki import G22, DevPki
from tests.unit.memory_tree import (
    COMMUNE,
    G14,
    H41,
    NOWHERE,
    OLD_H41,
    Tree,
    document,
    key_of,
)
from tests.unit.test_topology import HOMES, PARENTS


async def test_a_commune_reaches_a_ministry_and_another_province(tree: Tree, pki: DevPki) -> None:
    answer = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    assert answer.outcome == "accepted", answer
    assert await tree.wait(G14) == [answer.message_id]
    assert await tree.wait(H41) == [answer.message_id]
    destination = tree.nodes["province-h41"]
    envelope_wire = await destination.store.envelope(str(answer.message_id))
    (entry,) = await destination.store.mailbox(H41, unfetched_only=False, limit=1)
    arrived = await destination.store.package_bytes(entry.digest)
    envelope = open_envelope(envelope_wire, arrived, destination.peer_keys)
    assert envelope.hops == (
        "commune-21-31-h53",
        "district-31-h53",
        "province-h53",
        "central",
        "province-h41",
    )
    assert envelope.level == "strict"


async def test_a_fan_out_crosses_each_link_once(tree: Tree, pki: DevPki) -> None:
    data = example("document-new.edxml")
    tos = "".join(
        f"<edXML:To><edXML:OrganId>{organ}</edXML:OrganId></edXML:To>"
        for organ in HOMES
        if organ != G22
    )
    data = data.replace(b"</edXML:From>", b"</edXML:From>" + tos.encode(), 1)
    data = data.replace(
        b"<edXML:To>\n          <edXML:OrganId>000.00.00.H53</edXML:OrganId>",
        b"<edXML:To>\n          <edXML:OrganId>000.00.00.G14</edXML:OrganId>",
    )
    answer = await tree.submit("central", sign(data, pki.key(G22)))
    assert answer.outcome == "accepted", answer
    for organ in HOMES:
        if organ != G22:
            assert await tree.wait(organ) == [answer.message_id], organ
    per_link = tree.publishes_per_link()
    assert per_link == Counter(
        {
            "lienthong.link.central.down.province-h53.normal": 1,
            "lienthong.link.central.down.province-h41.normal": 1,
            "lienthong.link.province-h53.down.district-31-h53.normal": 1,
            "lienthong.link.district-31-h53.down.commune-21-31-h53.normal": 1,
        }
    )


async def test_a_status_finds_its_way_back_to_the_sender(tree: Tree, pki: DevPki) -> None:
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    await tree.wait(H41)
    status = example("status-03-accepted.edxml").replace(b"000.00.00.H53", H41.encode())
    status = status.replace(
        b"000.00.00.G22,2026/11/20,125/UBND-VP", f"{COMMUNE},2026/11/20,125/UBND-VP".encode()
    )
    status = status.replace(
        b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>",
        f"<edXML:OrganId>{COMMUNE}</edXML:OrganId>".encode(),
    )
    answer = await tree.submit("province-h41", sign(status, key_of(pki, H41)))
    assert answer.outcome == "accepted", answer
    found = await tree.wait(COMMUNE)
    assert answer.message_id in found
    assert sent.message_id not in found  # the commune sent the document; it gets the status


async def test_addressing_unknown_mixed_and_old_codes(tree: Tree, pki: DevPki) -> None:
    # at the root, where the whole directory is known: nobody hosts the only recipient,
    # so it is refused; with a known one beside it, that one gets it and the answer says
    nowhere = await tree.submit("central", document(pki, G14, NOWHERE, NOWHERE))
    assert (nowhere.outcome, nowhere.code) == ("refused", "route.unreachable")
    assert tree.publishes_per_link() == Counter()
    mixed = await tree.submit("central", document(pki, G14, H41, NOWHERE, 126))
    assert (mixed.outcome, mixed.unreachable) == ("accepted", (NOWHERE,))
    assert await tree.wait(H41) == [mixed.message_id]
    # below the root, an unknown recipient goes up for the root to judge (a lower node's
    # directory may lag behind); it crosses each link up once and lands nowhere
    before = tree.publishes_per_link()
    up = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, NOWHERE, NOWHERE))
    assert up.outcome == "accepted"
    await tree.wait(H41)  # the tree has settled what it carried before
    async with asyncio.timeout(10):
        while sum((tree.publishes_per_link() - before).values()) < 3:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert tree.publishes_per_link() - before == Counter(
        {
            up_queue("district-31-h53", "normal"): 1,
            up_queue("province-h53", "normal"): 1,
            up_queue("central", "normal"): 1,
        }
    )
    # and the root keeps each failure with its reason, where an auditor (and, with
    # receipts, the sender) finds it
    root = tree.nodes["central"].store
    async with asyncio.timeout(10):  # the root commits what the province published to it
        while len(await root.failed_outbox()) < 2:  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.02)
    failures = {(f.message_id, f.target, f.failure) for f in await root.failed_outbox()}
    judged = "unknown recipient: no node of this axis hosts 000.00.00.H37 (judged at central)"
    assert failures == {(mixed.message_id, NOWHERE, judged), (up.message_id, NOWHERE, judged)}
    # an old code, from before a merger: redirected to the agency that carries it on
    old = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, OLD_H41, OLD_H41, 127))
    assert (old.outcome, old.unreachable) == ("accepted", None)
    assert await tree.wait(H41, 2) == [mixed.message_id, old.message_id]


async def test_a_ministry_reaches_a_commune_and_recalls_from_every_recipient(
    tree: Tree, pki: DevPki
) -> None:
    sent = await tree.submit("central", document(pki, G14, H41, COMMUNE, 140))
    assert sent.outcome == "accepted", sent
    assert await tree.wait(COMMUNE) == [sent.message_id]  # down two levels of another branch
    assert await tree.wait(H41) == [sent.message_id]

    def about_it(name: str, sender: str) -> bytes:
        data = example(name).replace(b"125/UBND-VP", b"140/UBND-VP")
        data = data.replace(b"000.00.00.G22", G14.encode())  # the document's sender
        return sign(data.replace(b"000.00.00.H53", sender.encode()), key_of(pki, sender))

    # 13: the sender asks for it back, and the request goes to every recipient
    recall = example("status-13-recall-request.edxml").replace(b"125/UBND-VP", b"140/UBND-VP")
    recall = recall.replace(b"000.00.00.G22", G14.encode()).replace(b"000.00.00.H53", H41.encode())
    asked = await tree.submit("central", sign(recall, key_of(pki, G14)))
    assert asked.outcome == "accepted", asked
    assert await tree.wait(COMMUNE, 2) == [sent.message_id, asked.message_id]
    assert await tree.wait(H41, 2) == [sent.message_id, asked.message_id]

    # a status from an agency the document was not addressed to: refused where it enters
    stranger = "000.00.11.H53"  # a department of the province the document passed through
    refused = await tree.submit("province-h53", about_it("status-03-accepted.edxml", stranger))
    assert (refused.outcome, refused.code) == ("refused", "status.not_allowed")
    # while a recipient's own status goes back to the ministry
    agreed = await tree.submit("commune-21-31-h53", about_it("status-03-accepted.edxml", COMMUNE))
    assert agreed.outcome == "accepted", agreed
    assert await tree.wait(G14) == [agreed.message_id]


def letter(pki: DevPki, to: str, number: int) -> bytes:
    """A document from G22 to one agency, its own DocumentId by ``number``."""
    data = example("document-new.edxml")
    start, end = data.index(b"<edXML:To>"), data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    data = (
        data[:start]
        + f"<edXML:To><edXML:OrganId>{to}</edXML:OrganId></edXML:To>".encode()
        + data[end:]
    )
    data = data.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
    return sign(
        data.replace(b"<edXML:CodeNumber>125<", f"<edXML:CodeNumber>{number}<".encode()),
        pki.key(G22),
    )


async def test_a_full_lane_holds_back_its_own_link_only(
    tmp_path: Path, pki: DevPki, admission: Admission
) -> None:
    """An offline child's lane is full, and more rows wait for it than one relay batch
    holds: the other child's link and the local mailbox still get their packages."""
    transport = MemoryTransport()

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    central = Node(
        NodeSettings(
            "central",
            hosted=frozenset({G22, G14}),
            topology=Topology(PARENTS, HOMES),
            relay_batch=3,
            link_max_bytes=8 * 1024,  # one package
        ),
        store=SqliteStore(tmp_path / "central"),
        transport=transport,
        admit=run_admission,
        node_key=NodeKey("central", ec.generate_private_key(ec.SECP256R1())),
    )
    await central.store.migrate()
    await central.declare()
    try:
        for number, to in enumerate(["000.00.00.H53"] * 5 + [H41, G14]):
            await transport.publish(
                central.queues.inbound, Message(letter(pki, to, number)), timeout=5
            )
            stream = transport.consume(central.queues.inbound, prefetch=1)
            answer = await central.handle_submission(await anext(stream))
            await stream.aclose()
            assert answer.outcome == "accepted", answer
        for _ in range(3):  # rounds: the full lane refuses again each time
            await central.relay_once()
        assert transport.depth("lienthong.link.central.down.province-h41.normal") == 1
        assert len(await central.store.mailbox(G14, unfetched_only=False, limit=10)) == 1
        assert transport.depth("lienthong.link.central.down.province-h53.normal") == 1
        assert len(await central.store.pending_outbox(10)) == 4, "the refused rows wait"
    finally:
        await central.store.close()


@pytest.mark.parametrize(
    "body",
    [
        frame(b"[" * 5000, b"<edXML/>"),  # nesting past the parser's stack
        frame(
            b'{"envelope":{"v":1,"sig":{"node":"central","alg":"ES256","value":1}},"hops":[]}', b""
        ),
        frame(b'{"envelope":{"v":1,"x":"\\ud800","sig":{"node":"central"}},"hops":[]}', b"<p/>"),
        b"<edXML/>",  # no frame at all
    ],
    ids=["deep", "value not text", "lone surrogate", "unframed"],
)
async def test_a_hostile_link_message_is_kept_for_an_operator_and_the_node_goes_on(
    tree: Tree, pki: DevPki, body: bytes
) -> None:
    central = tree.nodes["central"]
    await tree.transport.publish(up_queue("central", "normal"), Message(body), timeout=5)
    async with asyncio.timeout(10):
        while not await central.store.dead_letters():  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.02)
    (letter,) = await central.store.dead_letters()
    assert letter.source == "link:normal"
    assert letter.reason.startswith("envelope.invalid")
    assert await central.store.dead_letter_bytes(letter.id) == body
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, G14, 131))
    assert await tree.wait(G14) == [sent.message_id]  # and the links still carry packages


async def test_a_link_dead_letter_replayed_goes_back_through_link_intake(
    tree: Tree, pki: DevPki
) -> None:
    central = tree.nodes["central"]
    province_key = central.peer_keys.pop("province-h53")  # central cannot check its hop yet
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, G14, 132))
    async with asyncio.timeout(10):
        while not await central.store.dead_letters():  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.02)
    (letter,) = await central.store.dead_letters()
    assert "province-h53" in letter.reason
    central.peer_keys["province-h53"] = province_key  # the operator fixes the certificates
    await central.replay_dead_letter(letter.id)
    assert await tree.wait(G14) == [sent.message_id]
    assert await central.store.dead_letters() == []


async def test_a_link_lane_takes_several_packages_at_once(tree: Tree, pki: DevPki) -> None:
    """The district commits three packages from its child together: none waits for the
    fsync of the one before it (each commit is held until all three are under way)."""
    district = tree.nodes["district-31-h53"]
    commit = district.store.commit_intake
    inside, all_in = 0, asyncio.Event()

    async def held(intake: Intake) -> IntakeResult:
        nonlocal inside
        inside += 1
        if inside == 3:
            all_in.set()
        async with asyncio.timeout(10):  # one at a time would never get here: fail, not hang
            await all_in.wait()
        return await commit(intake)

    district.store.commit_intake = held  # type: ignore[method-assign]
    answers = [
        await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41, number))
        for number in (201, 202, 203)
    ]
    assert {a.outcome for a in answers} == {"accepted"}
    assert sorted(await tree.wait(G14, 3)) == sorted(str(a.message_id) for a in answers)


async def test_a_link_that_fails_under_its_consumer_raises_its_fault_as_it_came(
    tree: Tree,
) -> None:
    """The parent link's loop waits and reconnects on a transient fault: it must get one,
    not a group of them, however many packages were in flight."""

    class GoneBroker:
        async def consume(self, queue: str, *, prefetch: int) -> AsyncIterator[Delivery]:
            raise TransientFault("the parent's broker went away")
            yield  # an async generator, as a transport's consume is

    node = tree.nodes["district-31-h53"]
    with pytest.raises(TransientFault, match="the parent's broker went away"):
        await node.consume_link(GoneBroker(), "lane", "normal", from_parent=True)  # type: ignore[arg-type]
