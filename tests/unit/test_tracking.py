"""Tracking as a sender sees it: every recipient's transport and business state at the
origin node, from receipts that travel back hop by hop, whatever order things arrive in."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric import ec

from exchange.checkpoint import checkpoint_event, make_checkpoint
from exchange.directory_sync import KIND_HEADER
from exchange.envelope import NodeKey, append_hop, seal
from exchange.evidence import Event, EventKind
from exchange.links import frame, up_queue
from exchange.node import Node
from exchange.reporting import REPORTS
from exchange.signing import sign
from exchange.status_view import DocumentStatus, document_status
from exchange.tracking import business_state, recipient_state
from exchange.transport import Message
from tests.conftest import example
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, NOWHERE, Tree, document, key_of

T0 = datetime(2027, 2, 2, 3, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Hà Nội
DOC = f"{COMMUNE},2026/11/20,125/UBND-VP"


def status_event(code: str, author: str, minutes: int) -> Event:
    return Event(
        EventKind.STATUS,
        f"status|{code}|{author}|{minutes}",
        T0 + timedelta(minutes=minutes),
        "n",
        document_id=DOC,
        party=author,
        detail={"code": code},
    )


def test_a_late_status_does_not_move_a_recipient_back() -> None:
    events = [status_event("05", H41, 10), status_event("01", H41, 1), status_event("03", H41, 30)]
    assert business_state(H41, events)[0] == "05"
    assert business_state(G14, events) == (None, None, None)  # one recipient's, not another's


def test_refused_or_registered_the_later_answer_counts_and_work_goes_on_from_it() -> None:
    assert business_state(H41, [status_event("03", H41, 5), status_event("02", H41, 9)])[0] == "02"
    assert business_state(H41, [status_event("02", H41, 9), status_event("03", H41, 5)])[0] == "02"
    assert business_state(H41, [status_event("02", H41, 1), status_event("04", H41, 5)])[0] == "04"


def test_two_answers_stamped_the_same_instant_read_the_same_in_either_order() -> None:
    """Found by tests/unit/test_fuzz_tracking.py: the first one seen used to win."""
    refused, registered = status_event("02", H41, 5), status_event("03", H41, 5)
    assert business_state(H41, [refused, registered])[0] == "03"
    assert business_state(H41, [registered, refused])[0] == "03"
    asked = Event(
        EventKind.STATUS, "s13", T0, "n", document_id=DOC, party=COMMUNE, detail={"code": "13"}
    )
    agreed, declined = status_event("15", H41, 5), status_event("16", H41, 5)
    assert business_state(H41, [asked, agreed, declined])[2] == "16"
    assert business_state(H41, [asked, declined, agreed])[2] == "16"


def test_a_signed_receipt_counts_whichever_delivery_is_seen_first() -> None:
    """Found by tests/unit/test_fuzz_tracking.py: only the first delivery's receipt counted."""

    def delivered(receipt: str) -> Event:
        return Event(
            EventKind.DELIVERED,
            f"d|{receipt}",
            T0,
            "n",
            detail={"recipients": [H41], "receipt": receipt},
        )

    for events in ([delivered(""), delivered("<r/>")], [delivered("<r/>"), delivered("")]):
        state = recipient_state(H41, T0, None, events, [], now=T0)
        assert (state.transport, state.receipt) == ("delivered", True)


def test_a_recall_is_asked_of_everyone_and_answered_by_each() -> None:
    asked = Event(
        EventKind.STATUS, "s13", T0, "n", document_id=DOC, party=COMMUNE, detail={"code": "13"}
    )
    answered = [asked, status_event("15", H41, 5)]
    assert business_state(H41, answered)[2] == "15"
    assert business_state(G14, answered)[2] == "13"
    # an answer that overtook the request still stands
    assert business_state(H41, [status_event("16", H41, 5), asked])[2] == "16"


def test_fetched_outranks_failed_outranks_delivered() -> None:
    delivered = Event(
        EventKind.DELIVERED, "d", T0, "province-h41", message_id="m", detail={"recipients": [H41]}
    )
    fetched = Event(
        EventKind.FETCHED, "f", T0 + timedelta(minutes=5), "province-h41", message_id="m", party=H41
    )
    revoked = Event(
        EventKind.REVOKED,
        "r",
        T0 + timedelta(minutes=3),
        "province-h41",
        message_id="m",
        party=H41,
        detail={"reason": "revoked by the sender"},
    )
    at = T0 + timedelta(hours=1)
    assert recipient_state(H41, T0, None, [delivered], [], now=at).transport == "delivered"
    assert recipient_state(H41, T0, None, [revoked, delivered], [], now=at).transport == "failed"
    state = recipient_state(H41, T0, None, [fetched, revoked, delivered], [], now=at)
    assert (state.transport, state.node) == ("fetched", "province-h41")
    assert recipient_state(H41, T0, T0, [], [], now=at).transport == "forwarded"


async def view(node: Node, ident: str) -> DocumentStatus:
    found = await document_status(
        node.store,
        ident,
        here=node.settings.node_id,
        topology=node.settings.topology,
        now=datetime.now(UTC),
    )
    assert found is not None
    return found


async def wait_for(
    node: Node, ident: str, want: dict[str, str], *, status: bool = False
) -> DocumentStatus:
    """The origin node's view once every named recipient is in the wanted state."""
    async with asyncio.timeout(20):
        while True:
            seen = await view(node, ident)
            states = {r.recipient: (r.status if status else r.transport) for r in seen.recipients}
            if all(states.get(k) == v for k, v in want.items()):
                return seen
            await asyncio.sleep(0.05)


async def statuses_from(node: Node, author: str) -> list[str]:
    """The status codes ``author`` sent about DOC, as the node has them so far."""
    seen = await view(node, DOC)
    return [code for _, who, code in seen.statuses if who == author]


def status_package(pki: DevPki, code: str, author: str, sender: str, stamp: str) -> bytes:
    data = example("status-03-accepted.edxml")
    data = data.replace(b"<edXML:StatusCode>03<", f"<edXML:StatusCode>{code}<".encode())
    data = data.replace(b"2026/11/20 10:30:00", stamp.encode())
    data = data.replace(
        b"000.00.00.G22,2026/11/20,125/UBND-VP", f"{sender},2026/11/20,125/UBND-VP".encode()
    )
    data = data.replace(
        b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>",
        f"<edXML:OrganId>{sender}</edXML:OrganId>".encode(),
    )
    data = data.replace(b"000.00.00.H53", author.encode())
    return sign(data, key_of(pki, author))


async def test_a_sender_sees_each_recipient_move_from_accepted_to_done(
    tree: Tree, pki: DevPki
) -> None:
    origin = tree.nodes["commune-21-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    assert sent.outcome == "accepted", sent
    first = await view(origin, str(sent.message_id))
    assert first.origin
    assert {r.recipient for r in first.recipients} == {G14, H41}
    # delivered at each recipient's node, as the receipts that came back say
    seen = await wait_for(origin, DOC, {G14: "delivered", H41: "delivered"})
    assert {r.recipient: r.node for r in seen.recipients} == {G14: "central", H41: "province-h41"}
    # the recipients' systems take their mail: fetched, reported back
    for organ, home in ((G14, "central"), (H41, "province-h41")):
        assert await tree.nodes[home].acknowledge(organ, [str(sent.message_id)]) == 1
    await wait_for(origin, DOC, {G14: "fetched", H41: "fetched"})
    # H41 answers every step, G14 only registers it; 04 overtakes 03 on the way
    for number, code in enumerate(("01", "04", "03", "05", "06")):
        answer = await tree.submit(
            "province-h41", status_package(pki, code, H41, COMMUNE, f"2026/11/21 0{number}:00:00")
        )
        assert answer.outcome == "accepted", answer
    answer = await tree.submit(
        "central", status_package(pki, "03", G14, COMMUNE, "2026/11/21 09:00:00")
    )
    assert answer.outcome == "accepted", answer
    # each status is a package of its own, and a link takes several at once: wait for all
    # five of H41's, not only for the furthest (06 may overtake 05 on the way)
    await wait_for(origin, DOC, {H41: "06", G14: "03"}, status=True)
    async with asyncio.timeout(20):
        while len(from_h41 := await statuses_from(origin, H41)) < 5:  # noqa: ASYNC110 - a store
            await asyncio.sleep(0.05)
    done = await view(origin, DOC)
    rows = {r.recipient: r for r in done.recipients}
    assert (rows[H41].transport, rows[H41].status_meaning) == ("fetched", "done")
    assert (rows[G14].transport, rows[G14].status_meaning) == ("fetched", "accepted")
    assert sorted(from_h41) == ["01", "03", "04", "05", "06"]
    # each status keeps the Timestamp its author wrote, carried in the envelope to the origin
    stamps = {
        str(e.detail["code"]): e.detail["sent_at"]
        for e in await origin.store.events_about(document_id=DOC)
        if e.kind is EventKind.STATUS and e.party == H41
    }
    assert stamps["04"] == "2026-11-21T01:00:00+07:00"


async def test_receipts_travel_batched_per_link_not_per_recipient(tree: Tree, pki: DevPki) -> None:
    origin = tree.nodes["commune-21-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    await wait_for(origin, str(sent.message_id), {G14: "delivered", H41: "delivered"})
    reports = Counter(
        q for q, m in tree.transport.published if m.headers.get(KIND_HEADER) == REPORTS
    )
    # two recipients' receipts share the links from central down to the commune
    down = [q for q in reports if ".down." in q]
    assert down, reports
    assert all(".down." in q or q.startswith("lienthong.link.central.up") for q in reports), reports


async def test_a_recipient_nobody_hosts_is_reported_failed_with_the_reason(
    tree: Tree, pki: DevPki
) -> None:
    origin = tree.nodes["commune-21-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, H41, NOWHERE))
    assert sent.outcome == "accepted", sent  # below the root, an unknown goes up to be judged
    seen = await wait_for(origin, str(sent.message_id), {NOWHERE: "failed", H41: "delivered"})
    failed = {r.recipient: r for r in seen.recipients}[NOWHERE]
    assert failed.node == "central"
    assert failed.reason is not None
    assert "unknown recipient" in failed.reason


async def test_a_childs_signed_checkpoint_is_kept_by_its_parent_and_a_forged_one_is_not(
    tree: Tree, pki: DevPki
) -> None:
    commune, district = tree.nodes["commune-21-31-h53"], tree.nodes["district-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    assert sent.outcome == "accepted", sent
    signed = await commune.checkpoint_once()
    assert signed is not None
    assert await commune.checkpoint_once() is None  # nothing new but the checkpoint itself
    head = (await commune.store.chain_heads())["main"]

    async def kept() -> list[Event]:
        entries = await district.store.log_entries(party=None, limit=1000)
        return [e.event for e in entries if e.event.kind is EventKind.CHECKPOINT]

    async with asyncio.timeout(20):
        while not (found := await kept()):  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.05)
    (checkpoint,) = found
    assert checkpoint.node == "commune-21-31-h53"
    assert checkpoint.detail["checkpoint"]["seq"] == signed == head[0] - 1
    # a checkpoint in the commune's name, signed by another node's key, is not kept
    forged = make_checkpoint(
        NodeKey("commune-21-31-h53", ec.generate_private_key(ec.SECP256R1())),
        "main",
        (signed + 5, "ab" * 32),
        datetime.now(UTC),
    )
    await commune.store.record_events(
        [checkpoint_event(forged, datetime.now(UTC), "district-31-h53")]
    )
    await commune.reports.relay_once()
    later = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41, 126))
    await wait_for(commune, str(later.message_id), {G14: "delivered"})
    assert [e.detail["checkpoint"]["seq"] for e in await kept()] == [signed]


async def test_a_package_past_its_hop_limit_is_reported_undeliverable_to_its_origin(
    tree: Tree, pki: DevPki
) -> None:
    """Directories that disagree send a package round: the node that stops it holds it for
    its operator, and the origin hears why each recipient will not get it."""
    data = document(pki, COMMUNE, H41, G14, 141)
    commune = tree.nodes["commune-21-31-h53"]
    wire = seal(
        commune._key,
        message_id="m-round",
        data=data,
        kind="edoc",
        sender=COMMUNE,
        recipients=[H41],
        document_id=f"{COMMUNE},2026/11/20,141/UBND-VP",
        level="strict",
        hop_limit=2,
    )
    wire = append_hop(wire, tree.nodes["district-31-h53"]._key)
    await tree.transport.publish(  # the district passes it up: the province may not go on
        up_queue("province-h53", "normal"), Message(frame(wire, data)), timeout=5
    )
    async with asyncio.timeout(20):
        while not (told := await commune.store.events_about(message_id="m-round")):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    (failed,) = told
    assert (failed.kind, failed.party, failed.node) == (EventKind.FAILED, H41, "province-h53")
    assert str(failed.detail["reason"]).startswith(
        "undeliverable: message m-round has crossed 2 nodes, its hop limit"
    )
    (letter,) = await tree.nodes["province-h53"].store.dead_letters()
    assert "hop limit" in letter.reason


async def test_a_push_agency_gets_its_mail_on_its_queue_and_its_ack_marks_it_fetched(
    tree: Tree, pki: DevPki
) -> None:
    home, origin = tree.nodes["province-h41"], tree.nodes["commune-21-31-h53"]
    home.settings = replace(home.settings, push=frozenset({H41}))
    await home.declare()
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41, 180))
    queue = home.queues.mailbox(H41)
    stream = tree.transport.consume(queue, prefetch=1)
    delivery = await asyncio.wait_for(anext(stream), timeout=20)
    assert delivery.message.message_id == sent.message_id
    assert delivery.message.body == await home.store.package_bytes(
        (await home.store.mailbox_entry(H41, str(sent.message_id))).digest  # type: ignore[union-attr]
    )
    # not fetched until the agency acknowledges it: then the sender hears
    view = await wait_for(origin, str(sent.message_id), {H41: "delivered"})
    assert {r.recipient: r.transport for r in view.recipients}[H41] == "delivered"
    assert await home.acknowledge(H41, [str(sent.message_id)]) == 1
    await delivery.ack()
    await stream.aclose()
    await wait_for(origin, str(sent.message_id), {H41: "fetched"})
    assert await home.push_once() == 0  # pushed once, not again


async def test_an_instance_sharing_the_chain_does_not_sign_another_instances_checkpoint(
    tree: Tree, pki: DevPki
) -> None:
    """Two service instances of one node on one evidence chain: the head one signed is
    not new to the other (else each would sign the other's checkpoint, forever)."""
    commune = tree.nodes["commune-21-31-h53"]
    sent = await tree.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    assert sent.outcome == "accepted", sent
    assert await commune.checkpoint_once() is not None
    other = Node(
        commune.settings,
        store=commune.store,
        transport=commune.transport,
        admit=None,  # type: ignore[arg-type]  # checkpoints only
        node_key=NodeKey(commune.settings.node_id, ec.generate_private_key(ec.SECP256R1())),
    )
    assert await other.checkpoint_once() is None
