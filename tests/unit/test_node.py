"""One node on the in-memory transport and a real SQLite store: what arrives, what the
submitter is told, what is dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admission, Admitted, admit
from exchange.config import Credential
from exchange.envelope import NodeKey, open_envelope
from exchange.errors import PermanentFault, TransientFault
from exchange.links import unframe, up_gate, up_queue
from exchange.node import AS_HEADER, OP_HEADER, Answer, Node, NodeSettings
from exchange.policy import VerificationPolicy
from exchange.signing import sign
from exchange.status_view import document_status
from exchange.topology import Topology
from exchange.transport import Message, QueueSpec
from tests.conftest import example
from tests.pki import G22, H53, DevPki

COMMUNE = "000.21.31.H53"
ANSWERS = "lienthong.reply.answers"


@contextlib.asynccontextmanager
async def one_node(
    tmp_path: Path, admission: Admission, settings: NodeSettings, **more: Any
) -> AsyncIterator[Node]:
    """A node on SQLite and the memory broker, its queues declared, the admission in a
    thread; ``more`` goes to Node (an observer, say)."""
    store = SqliteStore(tmp_path / "store")
    await store.migrate()
    transport = MemoryTransport()
    await transport.declare(QueueSpec(ANSWERS))

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    built = Node(
        settings,
        store=store,
        transport=transport,
        admit=run_admission,
        node_key=NodeKey(settings.node_id, ec.generate_private_key(ec.SECP256R1())),
        **more,
    )
    await built.declare()
    try:
        yield built
    finally:
        await store.close()


@pytest.fixture
async def node(tmp_path: Path, admission: Admission) -> AsyncIterator[Node]:
    settings = NodeSettings("province-h53", hosted=frozenset({G22, H53, COMMUNE}), max_attempts=3)
    async with one_node(tmp_path, admission, settings) as built:
        yield built


def memory(node: Node) -> MemoryTransport:
    assert isinstance(node.transport, MemoryTransport)
    return node.transport


async def submit(node: Node, data: bytes, user_id: str | None = None, **headers: str) -> Answer:
    await node.transport.publish(
        node.queues.inbound,
        Message(data, message_id="client-1", reply_to=ANSWERS, headers=headers, user_id=user_id),
        timeout=5,
    )
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    delivery = await asyncio.wait_for(anext(stream), timeout=5)
    answer = await node.handle_submission(delivery)
    await stream.aclose()
    return answer


async def heard(node: Node) -> Answer:
    stream = node.transport.consume(ANSWERS, prefetch=1)
    delivery = await asyncio.wait_for(anext(stream), timeout=5)
    await delivery.ack()
    await stream.aclose()
    assert delivery.message.correlation_id == "client-1"
    return Answer.decode(delivery.message.body)


async def request_fetch(node: Node, organ: str, user_id: str | None = None) -> list[Message]:
    """Every reply to one fetch request, the last one included."""
    await node.transport.declare(QueueSpec("lienthong.reply.fetch"))
    await node.transport.publish(
        node.queues.requests,
        Message(
            b"",
            reply_to="lienthong.reply.fetch",
            correlation_id="f-1",
            user_id=user_id,
            headers={OP_HEADER: "fetch", AS_HEADER: organ},
        ),
        timeout=5,
    )
    requests = node.transport.consume(node.queues.requests, prefetch=1)
    await node.handle_request(await asyncio.wait_for(anext(requests), timeout=5))
    await requests.aclose()
    replies = node.transport.consume("lienthong.reply.fetch", prefetch=100)
    got = []
    while True:
        delivery = await asyncio.wait_for(anext(replies), timeout=5)
        await delivery.ack()
        got.append(delivery.message)
        if delivery.message.headers["lienthong-last"]:
            break
    await replies.aclose()
    return got


async def fetch(node: Node, organ: str) -> list[Message]:
    """The packages a fetch returns."""
    replies = await request_fetch(node, organ)
    assert replies[-1].headers["lienthong-kind"] == "end"
    return [m for m in replies if m.headers["lienthong-kind"] == "package"]


async def test_a_document_lands_once_in_each_local_mailbox_byte_identical(
    node: Node, pki: DevPki
) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))  # to H53 and the commune
    answer = await submit(node, signed)
    assert (answer.outcome, answer.level) == ("accepted", "strict")
    assert await heard(node) == answer
    assert await node.relay_once() == 2
    assert await node.relay_once() == 0
    for organ in (H53, COMMUNE):
        (package,) = await fetch(node, organ)
        assert package.body == signed
        assert package.message_id == answer.message_id
        assert package.headers["lienthong-sender"] == G22
    assert await fetch(node, G22) == []


async def test_fetched_packages_are_not_fetched_again_once_marked(node: Node, pki: DevPki) -> None:
    answer = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    await node.relay_once()
    await node.transport.publish(
        node.queues.requests,
        Message(
            json.dumps([answer.message_id]).encode(),
            reply_to=ANSWERS,
            correlation_id="client-1",
            headers={OP_HEADER: "fetched", AS_HEADER: H53},
        ),
        timeout=5,
    )
    requests = node.transport.consume(node.queues.requests, prefetch=1)
    await node.handle_request(await anext(requests))
    await requests.aclose()
    assert await fetch(node, H53) == []
    assert len(await fetch(node, COMMUNE)) == 1


async def test_the_envelope_records_what_the_entry_node_established(
    node: Node, pki: DevPki
) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))
    answer = await submit(node, signed)
    assert answer.message_id is not None
    envelope = open_envelope(
        await node.store.envelope(answer.message_id),
        signed,
        {"province-h53": node._key.key.public_key()},
    )
    assert (envelope.sender, envelope.level, envelope.hops) == (G22, "strict", ("province-h53",))
    assert envelope.recipients == (H53, COMMUNE)


async def test_a_resubmission_gets_the_original_answer(node: Node, pki: DevPki) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))
    first = await submit(node, signed)
    again = await submit(node, signed)
    assert (again.outcome, again.message_id) == ("duplicate", first.message_id)
    await node.relay_once()
    assert len(await fetch(node, H53)) == 1


async def test_another_package_with_the_same_document_id_is_a_conflict(
    node: Node, pki: DevPki
) -> None:
    first = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    changed = example("document-new.edxml").replace(b"Nguy", b"Ng uy")
    conflict = await submit(node, sign(changed, pki.key(G22)))
    assert conflict.outcome == "conflict"
    assert conflict.message_id == first.message_id
    assert conflict.reason is not None
    assert str(first.message_id) in conflict.reason


async def test_a_refused_package_is_answered_and_leaves_nothing(node: Node) -> None:
    answer = await submit(node, example("document-new.edxml"))  # unsigned, strict source
    assert (answer.outcome, answer.code) == ("refused", "signature.missing")
    assert await node.store.pending_outbox(10) == []
    assert memory(node).depth(node.queues.inbound) == 0  # acknowledged, not requeued


def with_credentials(node: Node) -> None:
    node.settings = NodeSettings(
        node.settings.node_id,
        hosted=node.settings.hosted,
        sources={
            "legacy-gateway": VerificationPolicy(name="legacy-or-unsigned", allow_unsigned=True)
        },
        credentials={
            "gateway": Credential(source="legacy-gateway"),
            "vpcp-qlvb": Credential(organs=frozenset({G22})),
            "operator": Credential(trusted=True),
        },
    )


async def test_a_callers_credential_chooses_its_policy(node: Node) -> None:
    with_credentials(node)
    answer = await submit(node, example("document-new.edxml"), user_id="gateway")
    assert (answer.outcome, answer.level) == ("accepted", "unsigned")


async def test_a_header_cannot_choose_a_lax_policy(node: Node) -> None:
    with_credentials(node)
    named = {"lienthong-source": "legacy-gateway"}
    answer = await submit(node, example("document-new.edxml"), user_id="vpcp-qlvb", **named)
    assert (answer.outcome, answer.code) == ("refused", "signature.missing")
    trusted = await submit(node, example("document-new.edxml"), user_id="operator", **named)
    assert (trusted.outcome, trusted.level) == ("accepted", "unsigned")


async def test_a_caller_sends_only_for_its_own_agencies(node: Node, pki: DevPki) -> None:
    with_credentials(node)
    status = sign(example("status-03-accepted.edxml"), pki.key(H53))  # from H53
    answer = await submit(node, status, user_id="vpcp-qlvb")  # allowed only G22
    assert (answer.outcome, answer.code) == ("refused", "submitter.not_sender")
    stranger = await submit(node, status, user_id="nobody-we-know")
    assert (stranger.outcome, stranger.code) == ("refused", "submitter.not_sender")


async def test_a_caller_reads_only_its_own_mailboxes(node: Node, pki: DevPki) -> None:
    await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    await node.relay_once()
    with_credentials(node)
    (reply,) = await request_fetch(node, H53, user_id="vpcp-qlvb")  # allowed only G22
    assert reply.headers["lienthong-kind"] == "answer"
    assert Answer.decode(reply.body).code == "agency.not_yours"


async def test_a_status_goes_back_to_the_documents_sender(node: Node, pki: DevPki) -> None:
    await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    status = sign(example("status-03-accepted.edxml"), pki.key(H53))
    answer = await submit(node, status)
    assert answer.outcome == "accepted"
    await node.relay_once()
    (arrived,) = await fetch(node, G22)
    assert arrived.body == status


async def test_a_status_from_someone_not_addressed_is_refused(node: Node, pki: DevPki) -> None:
    await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    # G22 sent the document; "03 accepted" must come from a recipient
    forged = example("status-03-accepted.edxml").replace(b"000.00.00.H53", b"000.00.00.G22")
    answer = await submit(node, sign(forged, pki.key(G22)))
    assert (answer.outcome, answer.code) == ("refused", "status.not_allowed")


async def test_a_package_no_link_leads_to_is_refused(node: Node, pki: DevPki) -> None:
    elsewhere = (
        example("document-new.edxml")
        .replace(b"000.21.31.H53", b"000.00.00.H41")
        .replace(b"<edXML:OrganId>000.00.00.H53", b"<edXML:OrganId>000.00.00.H37")
    )
    answer = await submit(node, sign(elsewhere, pki.key(G22)))
    assert (answer.outcome, answer.code) == ("refused", "route.unreachable")
    assert answer.reason is not None
    assert "000.00.00.H41" in answer.reason
    assert "nothing was sent" in answer.reason
    assert await node.relay_once() == 0


async def test_known_recipients_get_it_and_the_answer_names_the_unreachable_ones(
    node: Node, pki: DevPki
) -> None:
    mixed = example("document-new.edxml").replace(b"000.21.31.H53", b"000.00.00.H41")
    answer = await submit(node, sign(mixed, pki.key(G22)))
    assert (answer.outcome, answer.unreachable) == ("accepted", ("000.00.00.H41",))
    assert answer.reason == "not sent to 000.00.00.H41: no node of this axis hosts it"
    assert await node.relay_once() == 1
    (entry,) = await node.store.mailbox(H53, unfetched_only=True, limit=10)
    assert entry.message_id == answer.message_id
    (failed,) = await node.store.failed_outbox()  # kept, for the sender's failed receipt
    assert (failed.message_id, failed.target) == (answer.message_id, "000.00.00.H41")
    assert failed.failure.startswith("unknown recipient: not hosted on province-h53")


async def test_a_remote_recipient_goes_to_the_parent_link_once(node: Node, pki: DevPki) -> None:
    node.settings = NodeSettings(node.settings.node_id, hosted=frozenset({G22}), parent="central")
    link = up_queue("central", "normal")
    await node.transport.declare(QueueSpec(link, exchange=up_gate("central")))
    signed = sign(example("document-new.edxml"), pki.key(G22))
    answer = await submit(node, signed)
    await node.relay_once()
    stream = node.transport.consume(link, prefetch=5)
    sent = await asyncio.wait_for(anext(stream), timeout=5)
    await sent.ack()
    await stream.aclose()
    envelope, data = unframe(sent.message.body)  # the envelope travels with the bytes
    assert data == signed
    assert sent.message.message_id == answer.message_id
    assert json.loads(envelope)["envelope"]["message_id"] == answer.message_id
    assert memory(node).depth(link) == 0  # one copy for two remote recipients


async def test_a_package_that_keeps_failing_is_dead_lettered_and_replayable(
    node: Node, pki: DevPki
) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))
    real_admit = node._admit
    failures = 0

    async def broken(data: bytes, policy: VerificationPolicy) -> Admitted:
        nonlocal failures
        failures += 1
        raise PermanentFault("the parser library aborted on this package")

    node._admit = broken
    await node.transport.publish(node.queues.inbound, Message(signed, reply_to=ANSWERS), timeout=5)
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    outcomes = []
    for _ in range(4):
        outcomes.append((await node.handle_submission(await anext(stream))).outcome)
    await stream.aclose()
    assert outcomes == ["retry", "retry", "retry", "dead-lettered"]
    assert failures == 3
    (dead,) = await node.store.dead_letters()
    assert dead.attempts == 3
    assert "the parser library aborted on this package" in dead.reason
    # resubmitted as it is, it is not tried again: it waits for an operator
    await node.transport.publish(node.queues.inbound, Message(signed, reply_to=ANSWERS), timeout=5)
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    held = await node.handle_submission(await anext(stream))
    await stream.aclose()
    assert (held.outcome, held.code) == ("dead-lettered", "intake.poison")
    assert failures == 3
    assert memory(node).depth(node.queues.dead) == 1
    node._admit = real_admit
    await node.replay_dead_letter(dead.id)
    assert await node.store.dead_letters() == []
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    replayed = await node.handle_submission(await anext(stream))
    await stream.aclose()
    assert replayed.outcome == "accepted"


async def test_a_package_submitted_as_another_agency_is_refused(node: Node, pki: DevPki) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))
    answer = await submit(node, signed, **{"lienthong-as": H53})
    assert (answer.outcome, answer.code) == ("refused", "submitter.not_sender")


async def test_a_transient_fault_is_not_counted_against_the_package(
    node: Node, pki: DevPki
) -> None:
    signed = sign(example("document-new.edxml"), pki.key(G22))
    real_admit = node._admit
    calls = 0

    async def flaky(data: bytes, policy: VerificationPolicy) -> Admitted:
        nonlocal calls
        calls += 1
        if calls <= 5:  # more than max_attempts (3)
            raise TransientFault("the CRL is due for renewal")
        return await real_admit(data, policy)

    node._admit = flaky
    await node.transport.publish(node.queues.inbound, Message(signed, reply_to=ANSWERS), timeout=5)
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    for _ in range(5):
        delivery = await anext(stream)
        with pytest.raises(TransientFault):
            await node.handle_submission(delivery)
        await delivery.reject(requeue=True)
    answer = await node.handle_submission(await anext(stream))
    await stream.aclose()
    assert answer.outcome == "accepted"
    assert await node.store.dead_letters() == []


async def test_a_new_document_cannot_take_another_senders_document_id(
    node: Node, pki: DevPki
) -> None:
    await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    hijack = example("document-new.edxml").replace(
        b"<edXML:OrganId>000.00.00.G22</edXML:OrganId>\n          <edXML:OrganizationInCharge>",
        b"<edXML:OrganId>000.00.00.H53</edXML:OrganId>\n          <edXML:OrganizationInCharge>",
        1,
    )
    assert hijack != example("document-new.edxml")
    answer = await submit(node, sign(hijack, pki.key(H53)))
    assert (answer.outcome, answer.code) == ("refused", "document_id.taken")


async def test_a_package_that_hangs_admission_is_counted_then_dead_lettered(
    node: Node, pki: DevPki
) -> None:
    async def hangs(data: bytes, policy: VerificationPolicy) -> Admitted:
        await asyncio.Event().wait()  # never returns
        raise AssertionError

    node._admit = hangs
    node.settings = NodeSettings(
        node.settings.node_id, hosted=node.settings.hosted, max_attempts=2, admission_timeout_s=0.05
    )
    signed = sign(example("document-new.edxml"), pki.key(G22))
    await node.transport.publish(node.queues.inbound, Message(signed), timeout=5)
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    outcomes = [(await node.handle_submission(await anext(stream))).outcome for _ in range(3)]
    await stream.aclose()
    assert outcomes == ["retry", "retry", "dead-lettered"]
    (dead,) = await node.store.dead_letters()
    assert "admission took longer than 0.05 s" in dead.reason


async def test_a_copy_waiting_longer_than_the_expiry_fails_with_its_reason(
    tmp_path: Path, admission: Admission, pki: DevPki
) -> None:
    """Expiry is judged from the store's record of when the copy was written."""
    now = [datetime(2026, 11, 20, 8, 0, tzinfo=UTC)]
    store = SqliteStore(tmp_path / "store")
    await store.migrate()
    transport = MemoryTransport()
    await transport.declare(QueueSpec(ANSWERS))

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    node = Node(
        NodeSettings(
            "commune", hosted=frozenset({G22}), parent="district", link_expiry=timedelta(days=7)
        ),
        store=store,
        transport=transport,
        admit=run_admission,
        node_key=NodeKey("commune", ec.generate_private_key(ec.SECP256R1())),
        clock=lambda: now[0],
    )
    await node.declare()
    # the link to the parent is down: nothing declared its queue, so every publish fails
    answer = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    assert answer.outcome == "accepted"
    assert await node.relay_once() == 0  # waits: a link that is down is not an error
    now[0] += timedelta(days=6)
    assert await node.relay_once() == 0  # still within its week
    now[0] += timedelta(days=2)
    assert await node.relay_once() == 1  # given up, with its reason
    (failed,) = await store.failed_outbox()
    assert (failed.message_id, failed.target) == (answer.message_id, "district/normal")
    assert failed.failure.startswith("expired: waited for link district/normal since 2026-11-20")
    # the sender sees each recipient behind that link failed, and why
    view = await document_status(
        store, str(answer.message_id), here="commune", topology=None, now=now[0]
    )
    assert view is not None
    assert {r.recipient: r.transport for r in view.recipients} == {
        H53: "failed",
        COMMUNE: "failed",
    }
    assert all(str(r.reason).startswith("expired: waited for link") for r in view.recipients)
    assert await node.relay_once() == 0  # and not tried again
    # a copy whose link is back is sent, however long it waited: only one that cannot go fails
    late = sign(
        example("document-new.edxml").replace(b"125/UBND-VP<", b"128/UBND-VP<"), pki.key(G22)
    )
    assert (await submit(node, late)).outcome == "accepted"
    now[0] += timedelta(days=30)  # the node itself was down a month
    await transport.declare(QueueSpec(up_queue("district", "normal"), exchange=up_gate("district")))
    assert await node.relay_once() == 1
    assert transport.depth(up_queue("district", "normal")) == 1
    assert len(await store.failed_outbox()) == 1  # still only the first
    await store.close()


async def test_a_revoke_in_the_same_relay_batch_as_its_document_keeps_it_out(
    node: Node, pki: DevPki
) -> None:
    original = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    revoke = example("document-revoke.edxml").replace(
        b"000.00.00.G22,2026/11/18,120/UBND-VP", b"000.00.00.G22,2026/11/20,125/UBND-VP"
    )
    revoking = await submit(node, sign(revoke, pki.key(G22)))
    assert (original.outcome, revoking.outcome) == ("accepted", "accepted")
    await node.relay_once()  # both in one batch, the document first
    for organ in (H53, COMMUNE):
        mail = await node.store.mailbox(organ, unfetched_only=False, limit=10)
        assert [e.message_id for e in mail] == [revoking.message_id], organ
    trail = await node.store.trail(str(original.message_id))
    assert trail is not None
    assert {(s.state, s.reason) for s in trail.steps} == {
        ("failed", "revoked by its sender before it arrived")
    }


async def test_a_receipt_that_cannot_be_issued_holds_up_no_mailbox(
    tmp_path: Path, admission: Admission, pki: DevPki
) -> None:
    store = SqliteStore(tmp_path / "store")
    await store.migrate()

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    def refuse(*_: object) -> bytes:
        raise ValueError("DocumentId is longer than a receipt holds")

    built = Node(
        NodeSettings("province-h53", hosted=frozenset({G22, H53, COMMUNE})),
        store=store,
        transport=MemoryTransport(),
        admit=run_admission,
        node_key=NodeKey("province-h53", ec.generate_private_key(ec.SECP256R1())),
        receipts=refuse,
    )
    await built.transport.declare(QueueSpec(ANSWERS))
    await built.declare()
    answer = await submit(built, sign(example("document-new.edxml"), pki.key(G22)))
    assert await built.relay_once() == 2
    mail = await store.mailbox(H53, unfetched_only=False, limit=10)
    assert [e.message_id for e in mail] == [answer.message_id]
    (delivered,) = [
        e
        for e in await store.events_about(message_id=str(answer.message_id))
        if e.kind.value == "delivered"
    ]
    assert "receipt" not in delivered.detail
    await store.close()


async def test_a_malformed_status_request_is_dropped_and_the_node_goes_on(node: Node) -> None:
    await node.transport.declare(QueueSpec("lienthong.reply.status"))
    await node.transport.publish(
        node.queues.requests,
        Message(
            b"[]", reply_to="lienthong.reply.status", headers={OP_HEADER: "status", AS_HEADER: G22}
        ),
        timeout=5,
    )
    stream = node.transport.consume(node.queues.requests, prefetch=1)
    delivery = await asyncio.wait_for(anext(stream), timeout=5)
    with pytest.raises(ValueError, match="a status request is"):
        await node.handle_request(delivery)  # serve_requests drops it with this reason
    await stream.aclose()


async def test_a_request_nested_past_the_parsers_stack_is_dropped_not_fatal(node: Node) -> None:
    await node.transport.declare(QueueSpec("lienthong.reply.deep"))
    for body in (b"[" * 100_000, b"[" * (64 * 1024 + 1), b"[]"):  # two hostile, then a fair one
        await node.transport.publish(
            node.queues.requests,
            Message(
                body,
                reply_to="lienthong.reply.deep",
                headers={OP_HEADER: "fetched", AS_HEADER: G22},
            ),
            timeout=5,
        )
    served = asyncio.create_task(node.serve_requests())
    replies = node.transport.consume("lienthong.reply.deep", prefetch=1)
    answer = await asyncio.wait_for(anext(replies), timeout=10)  # the loop lived to answer it
    assert json.loads(answer.message.body) == {"marked": 0}
    assert memory(node).depth("lienthong.reply.deep") == 0  # and only that one was answered
    await replies.aclose()
    assert not served.done()
    served.cancel()


async def test_a_login_over_its_rate_is_refused_only_where_it_can_be_told(
    node: Node, pki: DevPki
) -> None:
    """Past its rate a login is answered ``intake.rate_limited``; a submission without
    reply_to is never refused so (it would be lost without a word), and a package held for
    a full disk is not charged again at each try."""
    node.settings = NodeSettings(
        node.settings.node_id,
        hosted=node.settings.hosted,
        credentials={"vendor": Credential(organs=frozenset({G22}), rate_per_s=1)},
    )
    documents = [
        sign(example("document-new.edxml").replace(b"125/UBND-VP", b"%d/UBND-VP" % n), pki.key(G22))
        for n in range(6)
    ]
    answers = [await submit(node, data, user_id="vendor") for data in documents[:3]]
    assert [a.outcome for a in answers[:2]] == ["accepted", "accepted"]  # a burst of two
    assert (answers[2].outcome, answers[2].code) == ("refused", "intake.rate_limited")
    for data in documents[3:]:  # no reply_to: taken, however fast
        await node.transport.publish(
            node.queues.inbound, Message(data, message_id="quiet", user_id="vendor"), timeout=5
        )
        stream = node.transport.consume(node.queues.inbound, prefetch=1)
        answer = await node.handle_submission(await asyncio.wait_for(anext(stream), 5))
        await stream.aclose()
        assert answer.outcome == "accepted", answer
    # a submission held for a full disk is tried again uncharged
    (held,) = documents[2:3]
    await node.transport.publish(
        node.queues.inbound,
        Message(held, message_id="held", reply_to=ANSWERS, user_id="vendor"),
        timeout=5,
    )
    stream = node.transport.consume(node.queues.inbound, prefetch=1)
    retried = await node.handle_submission(
        await asyncio.wait_for(anext(stream), 5), charge_rate=False
    )
    await stream.aclose()
    assert retried.outcome == "accepted", retried


async def test_link_lanes_are_quorum_queues_when_the_node_asks_for_them(
    tmp_path: Path, admission: Admission
) -> None:
    """On a cluster a classic lane lives on one broker node; with it down the node could
    not declare its queues again, and would stop."""
    tree = Topology({"central": None, "province-h53": "central", "d": "province-h53"}, {})
    settings = NodeSettings(
        "province-h53", hosted=frozenset({H53}), quorum=True, parent="central", topology=tree
    )
    async with one_node(tmp_path, admission, settings) as built:
        specs = memory(built).queues
        lanes = [spec.spec for name, spec in specs.items() if name.startswith("lienthong.link.")]
        assert lanes, "the node declares its link lanes"
        assert all(spec.quorum for spec in lanes), [s.name for s in lanes if not s.quorum]
