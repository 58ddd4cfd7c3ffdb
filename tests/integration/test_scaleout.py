"""One node as two service instances: two Node objects with the same node id, the same
RabbitMQ queues and one PostgreSQL store, beside its parent, on the real services.

What each instance polls from the store is leased to it (adapters/store_postgres.py):
every package lands in its mailbox once, every link copy is published once, every receipt
is reported once, and what an instance that went away (or hung) had taken is relayed by
the other. Schemas and queues carry a random suffix and are removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.agency_gate import AgencyGate, Caller
from adapters.http_api import MAX_WAIT_S
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from adapters.transport_amqp import AmqpTransport
from exchange import reporting
from exchange.admission import Admission, Admitted, admit
from exchange.config import Credential
from exchange.directory_sync import KIND_HEADER
from exchange.envelope import NodeKey
from exchange.errors import TransientFault
from exchange.evidence import Event, EventKind
from exchange.links import up_queue
from exchange.node import Answer, Node, NodeSettings, queues_of
from exchange.policy import VerificationPolicy
from exchange.store import Destination, Intake, Outcome
from exchange.topology import Topology
from exchange.transport import Delivery, Message, QueueInfo, QueueSpec
from tests.contract.stores import PG_DSN, drop_location, intake
from tests.integration.broker import AMQP_URL, delete_queues
from tests.pki import DevPki
from tests.unit.memory_tree import document

pytestmark = pytest.mark.integration

G22, G14 = "000.00.00.G22", "000.00.00.G14"  # hosted by the parent
H53, COMMUNE = "000.00.00.H53", "000.21.31.H53"  # hosted by the node of two instances
REPLIES = "lienthong.reply.scaleout-"


# --- the store alone: two store objects on one schema -----------------------------------


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    where = f"scale_{uuid.uuid4().hex[:12]}"
    yield where
    drop_location("postgres", where)


def numbered(i: int, **more: object) -> Intake:
    """A package of its own (its own DocumentId, so its own dedup key)."""
    return intake(f"<p>{i}</p>".encode(), document_id=f"G22,2027/01/01,{i}/VP", **more)  # type: ignore[arg-type]


async def two_stores(schema: str) -> tuple[PostgresStore, PostgresStore]:
    first, second = PostgresStore(PG_DSN, schema=schema), PostgresStore(PG_DSN, schema=schema)
    await first.migrate()
    await second.migrate()
    return first, second


async def test_two_instances_claim_each_outbox_row_once(schema: str) -> None:
    a, b = await two_stores(schema)
    try:
        for i in range(20):
            await a.commit_intake(numbered(i, links=("parent/normal",)))
        mine, theirs = await asyncio.gather(a.pending_outbox(25), b.pending_outbox(25))
        ids = [r.id for r in (*mine, *theirs)]
        assert len(ids) == 40, "every row to one instance"
        assert len(set(ids)) == 40, "and to one only"
        # asked again, each has its own rows back (not done yet), and nothing of the other's
        assert {r.id for r in await a.pending_outbox(100)} == {r.id for r in mine}
        assert {r.id for r in await b.pending_outbox(100)} == {r.id for r in theirs}
        mailboxes = [(r.target, r.message_id) for r in mine if r.destination is Destination.MAILBOX]
        await a.finish_outbox(mailboxes, [r.id for r in mine])
        assert await a.pending_outbox(100) == []
    finally:
        await a.close()
        await b.close()


async def test_an_instance_gone_leaves_its_rows_and_reports_and_mail_to_the_other(
    schema: str,
) -> None:
    a, b = await two_stores(schema)
    try:
        await a.commit_intake(intake(b"<p>1</p>", mailboxes=(H53,), links=("parent/normal",)))
        await a.record_events([_fetched("m-1")])
        await a.deliver(H53, (await a.pending_outbox(10))[0].message_id)
        taken = (
            await a.pending_outbox(10),
            await a.pending_reports(10),
            await a.unpushed(H53, 10),
        )
        assert all(len(t) >= 1 for t in taken)
        assert (await b.pending_outbox(10), await b.pending_reports(10)) == ([], [])
        assert await b.unpushed(H53, 10) == []
        await a.close()  # the instance is gone, its connections with it
        await _gone(a.owner)
        again = (
            await b.pending_outbox(10),
            await b.pending_reports(10),
            await b.unpushed(H53, 10),
        )
        assert [[_id(x) for x in t] for t in again] == [[_id(x) for x in t] for t in taken]
    finally:
        await a.close()
        await b.close()


async def test_a_lease_that_ran_out_is_taken_by_the_other_instance(schema: str) -> None:
    a, b = await two_stores(schema)
    try:
        await a.commit_intake(intake(b"<p>1</p>", mailboxes=(), links=("parent/normal",)))
        await a.record_events([_fetched("m-1")])
        (row,) = await a.pending_outbox(10)  # taken, and the instance hangs (still connected)
        (report,) = await a.pending_reports(10)
        assert (await b.pending_outbox(10), await b.pending_reports(10)) == ([], [])
        await _run_out(schema)
        assert [r.id for r in await b.pending_outbox(10)] == [row.id]
        assert [i for i, _ in await b.pending_reports(10)] == [report[0]]
        assert (await a.pending_outbox(10), await a.pending_reports(10)) == ([], [])
    finally:
        await a.close()
        await b.close()


async def test_concurrent_intake_of_one_package_commits_once_and_answers_duplicate(
    schema: str,
) -> None:
    a, b = await two_stores(schema)
    try:
        results = await asyncio.gather(
            *(store.commit_intake(numbered(i)) for i in range(30) for store in (a, b))
        )
        for first, second in zip(results[::2], results[1::2], strict=True):
            assert sorted([first.outcome, second.outcome]) == [Outcome.COMMITTED, Outcome.DUPLICATE]
            assert first.message_id == second.message_id
        assert len(await a.pending_outbox(100)) == 30
    finally:
        await a.close()
        await b.close()


async def test_the_same_bytes_under_two_keys_at_once_are_one_commit_and_a_duplicate(
    schema: str,
) -> None:
    """A link copy and an agency's submission of the same bytes, in two instances at once:
    both pass the check for known bytes before either writes its package row."""
    a, b = await two_stores(schema)
    data = b"<p>the same bytes</p>"
    try:
        async with await psycopg.AsyncConnection.connect(PG_DSN) as hold:
            await hold.execute(f"LOCK TABLE {schema}.packages IN EXCLUSIVE MODE".encode())
            racing = [
                asyncio.create_task(a.commit_intake(replace(intake(data), key="message:one"))),
                asyncio.create_task(b.commit_intake(replace(intake(data), key="message:two"))),
            ]
            await _until_waiting(schema, {a.owner, b.owner})
            await hold.commit()  # the lock goes: one writes its row, the other finds it
        results = await asyncio.gather(*racing)
        assert sorted(r.outcome for r in results) == [Outcome.COMMITTED, Outcome.DUPLICATE]
        assert len({r.message_id for r in results}) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_revoke_by_the_other_instance_undoes_a_delivery_claimed_before_it(
    schema: str,
) -> None:
    a, b = await two_stores(schema)
    try:
        await a.commit_intake(intake(b"<doc/>", mailboxes=(H53,)))
        (row,) = await a.pending_outbox(10)  # instance a takes the copy for H53 ...
        assert row.document_id is not None
        assert row.sender is not None
        assert not row.revoked
        at = datetime.now(UTC)  # ... and b takes a revoke of the document meanwhile
        assert await b.withdraw(H53, row.document_id, row.sender, "m-revoke", at) == []
        with pytest.raises(TransientFault, match="revoked meanwhile"):
            await a.finish_outbox([(H53, row.message_id)], [row.id])
        assert await a.mailbox(H53, unfetched_only=False, limit=10) == []
        (again,) = await a.pending_outbox(10)  # taken again, and judged anew
        assert (again.id, again.revoked) == (row.id, True)
    finally:
        await a.close()
        await b.close()


def _fetched(message_id: str, here: str = "node", origin: str = "parent") -> Event:
    """A fetch here of a package from ``origin``: a report bound for that node."""
    return reporting.fetched(
        message_id=message_id,
        document_id=None,
        sender=G22,
        digest="0" * 64,
        organ=H53,
        here=here,
        at=datetime.now(UTC),
        origin=origin,
    )


def _id(item: object) -> object:
    if isinstance(item, tuple):
        return item[0]  # a report: (row id, event)
    return getattr(item, "id", None) or getattr(item, "message_id", None)


async def _run_out(schema: str) -> None:
    """The clock passes every lease (rather than a test waiting for it to)."""
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        past = "now() - interval '1 second'"
        await conn.execute(f"UPDATE {schema}.outbox SET leased_until = {past}".encode())
        await conn.execute(f"UPDATE {schema}.evidence SET report_leased_until = {past}".encode())
        await conn.execute(f"UPDATE {schema}.mailbox SET push_leased_until = {past}".encode())


async def _sessions(owners: set[str], *, waiting: bool) -> set[str]:
    """Which of these store objects have a connection (waiting on a lock, with ``waiting``)."""
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT application_name FROM pg_stat_activity WHERE application_name = ANY(%s)"
                " AND (NOT %s OR wait_event_type = 'Lock')",
                (sorted(owners), waiting),
            )
        ).fetchall()
    return {r[0] for r in rows}


async def _until_waiting(schema: str, owners: set[str]) -> None:
    """Until a statement of each of these store objects waits on a lock."""
    del schema
    async with asyncio.timeout(20):
        while await _sessions(owners, waiting=True) != owners:  # noqa: ASYNC110 - the server
            await asyncio.sleep(0.02)


async def _gone(owner: str) -> None:
    """Until the server has let the connections of a closed store go."""
    async with asyncio.timeout(20):
        while await _sessions({owner}, waiting=False):  # noqa: ASYNC110 - the server
            await asyncio.sleep(0.02)


# --- whole nodes: two instances of one node beside its parent ----------------------------


class Counted:
    """A transport that notes each publish the broker confirmed: what the queues got."""

    def __init__(self, inner: AmqpTransport, published: list[tuple[str, Message]]) -> None:
        self.inner, self.published = inner, published

    async def declare(self, spec: QueueSpec) -> None:
        await self.inner.declare(spec)

    async def publish(
        self, queue: str, message: Message, *, timeout: float, exchange: str = ""
    ) -> None:
        await self.inner.publish(queue, message, timeout=timeout, exchange=exchange)
        self.published.append((queue, message))

    def consume(self, queue: str, *, prefetch: int) -> AsyncGenerator[Delivery, None]:
        return self.inner.consume(queue, prefetch=prefetch)

    async def inspect(self, queue: str) -> QueueInfo | None:
        return await self.inner.inspect(queue)

    async def close(self) -> None:
        await self.inner.close()


@dataclass
class InProcess:
    """A submission handed to one instance directly (not through the shared queue)."""

    message: Message
    redelivered: bool = False

    async def ack(self) -> None:
        return None

    async def reject(self, *, requeue: bool) -> None:
        return None


@dataclass
class Cluster:
    parent: Node
    instances: list[Node]
    published: list[tuple[str, Message]]  # what the instances published, confirmed
    schema: str
    keys: dict[str, NodeKey]
    transports: list[AmqpTransport] = field(default_factory=list)

    @property
    def node_id(self) -> str:
        return self.instances[0].settings.node_id

    def link_copies(self) -> Counter[str]:
        up = {up_queue(self.parent.settings.node_id, lane) for lane in ("urgent", "normal", "bulk")}
        return Counter(
            m.message_id or ""
            for q, m in self.published
            if q in up and m.headers.get(KIND_HEADER) != reporting.REPORTS
        )

    def reported(self) -> list[Event]:
        keys = {self.node_id: self.keys[self.node_id].key.public_key()}
        found: list[Event] = []
        for _, message in self.published:
            if message.headers.get(KIND_HEADER) == reporting.REPORTS:
                found += reporting.open_reports(message.body, keys, [self.node_id])[1]
        return found

    def pushed(self, organ: str) -> Counter[str]:
        queue = self.instances[0].queues.mailbox(organ)
        return Counter(m.message_id or "" for q, m in self.published if q == queue)


def _settings(
    node_id: str, hosted: set[str], parent: str | None, topology: Topology, recheck_s: float
) -> NodeSettings:
    return NodeSettings(
        node_id,
        hosted=frozenset(hosted),
        parent=parent,
        topology=topology,
        relay_idle_s=0.05,
        relay_batch=7,  # small batches: the two instances' relays interleave
        reports_recheck_s=recheck_s,
        push=frozenset({H53}) if parent else frozenset(),
        intake_concurrency=4,
        prefetch=8,
    )


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, admission: Admission, *, one_chain: bool, run: bool = True
) -> AsyncIterator[Cluster]:
    """The parent (SQLite) and two instances of its child (one PostgreSQL schema), their
    queues declared; running, or (``run`` False) for a test to drive by hand."""
    recheck_s = 0.2 if run else 0.0  # by hand: the report relay asks the store every time
    tag = uuid.uuid4().hex[:8]
    parent_id, node_id = f"scale-p-{tag}", f"scale-n-{tag}"
    topology = Topology(
        {parent_id: None, node_id: parent_id},
        {G22: parent_id, G14: parent_id, H53: node_id, COMMUNE: node_id},
    )
    keys = {n: NodeKey(n, ec.generate_private_key(ec.SECP256R1())) for n in (parent_id, node_id)}
    public = {n: k.key.public_key() for n, k in keys.items()}

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    schema = f"scale_{tag}"
    published: list[tuple[str, Message]] = []
    transports = [AmqpTransport(AMQP_URL) for _ in range(3)]
    stores = [
        PostgresStore(PG_DSN, schema=schema, chain="main" if one_chain else f"i{i}")
        for i in range(2)
    ]
    parent = Node(
        _settings(parent_id, {G22, G14}, None, topology, recheck_s),
        store=SqliteStore(tmp_path / "parent"),
        transport=transports[0],
        admit=run_admission,
        node_key=keys[parent_id],
        peer_keys=public,
    )
    instances = [
        Node(
            _settings(node_id, {H53, COMMUNE}, parent_id, topology, recheck_s),
            store=store,
            transport=Counted(transport, published),
            admit=run_admission,
            node_key=keys[node_id],
            peer_keys=public,
        )
        for store, transport in zip(stores, transports[1:], strict=True)
    ]
    made = Cluster(parent, instances, published, schema, keys, transports)
    try:
        for node in (parent, *instances):
            await node.store.migrate()
            await node.declare()
        await instances[0].declare_parent_link()
        if not run:
            yield made
            return
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(n.run()) for n in (parent, *instances)]
            try:
                yield made
            finally:
                for task in tasks:
                    task.cancel()
    finally:
        for node in (parent, *instances):
            await node.store.close()
        for transport in transports:
            await transport.close()
        await delete_queues(
            [
                *queues_of(parent_id, None),
                *queues_of(node_id, parent_id),
                instances[0].queues.mailbox(H53),
            ]
        )
        drop_location("postgres", schema)


async def _submit(cluster: Cluster, packages: Sequence[bytes]) -> list[Answer]:
    """Through the node's inbound queue, which both instances consume; every answer."""
    transport = AmqpTransport(AMQP_URL)
    replies = f"{REPLIES}{uuid.uuid4().hex[:8]}"
    try:
        await transport.declare(QueueSpec(replies, exclusive=True))
        for index, data in enumerate(packages):
            await transport.publish(
                cluster.instances[0].queues.inbound,
                Message(data, correlation_id=str(index), reply_to=replies),
                timeout=10,
            )
        answers: dict[str, Answer] = {}
        stream = transport.consume(replies, prefetch=50)
        async with asyncio.timeout(60):
            async for delivery in stream:
                answer = Answer.decode(delivery.message.body)
                answers[delivery.message.correlation_id or ""] = answer
                await delivery.ack()
                if len(answers) == len(packages):
                    break
        await stream.aclose()
        return [answers[str(i)] for i in range(len(packages))]
    finally:
        await transport.close()


async def _count(schema: str, query: str, *args: object) -> int:
    async with await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn:
        await conn.execute(f"SET search_path = {schema}".encode())
        row = await (await conn.execute(query.encode(), args)).fetchone()
    assert row is not None
    return int(row[0])


async def _until(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    """Until ``check()`` holds (it reads stores other tasks write); a deadline, no guess."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - stores others write
            await asyncio.sleep(0.1)


def digests(packages: Sequence[bytes]) -> list[str]:
    return sorted(hashlib.sha256(p).hexdigest() for p in packages)


async def mail(node: Node, organ: str) -> list[str]:
    """The digests in a mailbox: a package committed twice (two message ids) shows twice."""
    found = await node.store.mailbox(organ, unfetched_only=False, limit=10_000)
    return sorted(e.digest for e in found)


async def heard_from(cluster: Cluster) -> set[tuple[str, str, str]]:
    """(kind, message id, agency) of each delivery and fetch at the node the parent knows."""
    known = set()
    for entry in await cluster.parent.store.log_entries(limit=100_000):
        event = entry.event
        if event.node != cluster.node_id or event.message_id is None:
            continue
        if event.kind is EventKind.DELIVERED:
            known |= {("delivered", event.message_id, o) for o in event.detail["recipients"]}
        elif event.kind is EventKind.FETCHED and event.party:
            known.add(("fetched", event.message_id, event.party))
    return known


@pytest.mark.parametrize("one_chain", [True, False], ids=["one-chain", "a-chain-each"])
async def test_two_instances_of_one_node_deliver_publish_and_report_each_thing_once(
    tmp_path: Path, pki: DevPki, admission: Admission, one_chain: bool
) -> None:
    up = [document(pki, H53, G14, COMMUNE, 3000 + i) for i in range(24)]  # to G14, COMMUNE
    twice = [document(pki, H53, G14, COMMUNE, 5000 + i) for i in range(6)]  # to both at once
    down = [document(pki, G22, H53, COMMUNE, 4000 + i) for i in range(12)]  # from the parent
    async with cluster(tmp_path, admission, one_chain=one_chain) as c:
        a, b = c.instances
        answers = await _submit(c, up)
        racing = await asyncio.gather(
            *(node.handle_submission(InProcess(Message(data))) for data in twice for node in (a, b))
        )
        for data in down:  # the parent's agency sends to the node's two agencies
            sent = await c.parent.handle_submission(InProcess(Message(data)))
            assert sent.outcome == "accepted", sent
        assert {x.outcome for x in answers} == {"accepted"}, answers
        for first, second in zip(racing[::2], racing[1::2], strict=True):
            assert sorted([first.outcome, second.outcome]) == ["accepted", "duplicate"]
            assert first.message_id == second.message_id
        sent_up = {x.message_id for x in (*answers, *racing)}

        async def pushed_all() -> bool:  # H53 is a push agency: its mail goes to its queue
            return len(await mail(a, H53)) == len(down) and not await _count(
                c.schema,
                "SELECT count(*) FROM mailbox WHERE pushed_at IS NULL AND organ_id = %s",
                H53,
            )

        await _until(pushed_all)
        # H53 acknowledges its mail: some through each instance, some through both at once
        ids = [e.message_id for e in await a.store.mailbox(H53, unfetched_only=False, limit=99)]
        marked = await asyncio.gather(a.acknowledge(H53, ids[:8]), b.acknowledge(H53, ids[4:]))
        assert sum(marked) == len(down), "each package marked fetched once"

        async def settled() -> bool:  # nothing left to publish, and the parent heard it all
            left = await _count(
                c.schema,
                "SELECT (SELECT count(*) FROM outbox WHERE done_at IS NULL) + (SELECT count(*)"
                " FROM evidence WHERE report_to IS NOT NULL AND reported_at IS NULL)",
            )
            return (
                not left
                and len(await heard_from(c)) == 3 * len(down)
                # the parent's own intake and relay write its mailbox, after its outbox
                and len(await mail(c.parent, G14)) >= len(up) + len(twice)
            )

        await _until(settled)
        # every package in each of its mailboxes exactly once, at both nodes
        assert await mail(a, COMMUNE) == digests([*up, *twice, *down])
        assert await mail(b, H53) == digests(down)
        assert await mail(c.parent, G14) == digests([*up, *twice])
        link_copies, reported, pushed = c.link_copies(), c.reported(), c.pushed(H53)

    # every link copy published once, by one instance or the other
    assert link_copies.keys() == sent_up
    assert set(link_copies.values()) == {1}, link_copies
    # every receipt reported once: a delivery or a fetch of each copy, in one report
    keys = Counter(e.key for e in reported)
    assert set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1]
    copies = Counter(
        (e.kind.value, e.message_id, organ)
        for e in reported
        for organ in (e.detail["recipients"] if e.kind is EventKind.DELIVERED else [e.party])
    )
    assert set(copies.values()) == {1}
    assert len(copies) == 3 * len(down)
    # and the push agency's mail published to its queue once
    assert pushed.keys() == set(ids)
    assert set(pushed.values()) == {1}, pushed


async def test_what_an_instance_took_and_left_is_relayed_by_the_other(
    tmp_path: Path, pki: DevPki, admission: Admission
) -> None:
    """One instance takes rows and reports to relay and goes away mid-batch (its store
    closed: its connections with it); the other relays each of them once. Then one takes
    rows and hangs, connected: the other leaves them until the lease runs out."""
    packages = [document(pki, H53, G14, COMMUNE, 6000 + i) for i in range(10)]
    async with cluster(tmp_path, admission, one_chain=False, run=False) as c:
        a, b = c.instances
        for data in packages[:5]:
            assert (await a.handle_submission(InProcess(Message(data)))).outcome == "accepted"
        await a.store.record_events([_fetched("m-gone", c.node_id, c.parent.settings.node_id)])
        taken = await a.store.pending_outbox(100)
        assert len(taken) == 10
        assert len(await a.store.pending_reports(10)) == 1
        assert await b.relay_once() == 0
        assert await b.reports.relay_once() == 0
        gone = a.store
        assert isinstance(gone, PostgresStore)
        await gone.close()  # a is gone
        await _gone(gone.owner)
        assert await b.relay_once() == 10
        assert await b.reports.relay_once() == 1

        hung = PostgresStore(PG_DSN, schema=c.schema)  # a again, and this time it hangs
        a.store = hung
        for data in packages[5:]:
            assert (await a.handle_submission(InProcess(Message(data)))).outcome == "accepted"
        await a.store.record_events([_fetched("m-hung", c.node_id, c.parent.settings.node_id)])
        assert len(await hung.pending_outbox(100)) == 10
        assert await hung.pending_reports(10)
        assert await b.relay_once() == 0
        assert await b.reports.relay_once() == 0
        await _run_out(c.schema)
        assert await b.relay_once() == 10
        assert await b.reports.relay_once() == 1
        assert await mail(b, COMMUNE) == digests(packages)
        await hung.close()
        link_copies, reported = c.link_copies(), c.reported()
    assert len(link_copies) == 10
    assert set(link_copies.values()) == {1}
    assert sorted(e.message_id or "" for e in reported) == ["m-gone", "m-hung"]


async def test_a_long_poll_on_one_instance_finds_mail_the_other_delivered(
    tmp_path: Path, pki: DevPki, admission: Admission
) -> None:
    """Mail put in a mailbox by one instance wakes nobody in the other's process: a
    caller waiting there finds it at the next look (LOOK_S), not at the end of its wait."""
    async with cluster(tmp_path, admission, one_chain=False, run=False) as c:
        a, b = c.instances
        gate = AgencyGate(b, dry_run=None)  # type: ignore[arg-type]  # reads only
        caller = Caller("qlvb", Credential(organs=frozenset({COMMUNE})))
        waiting = asyncio.create_task(
            gate.mailbox(caller, COMMUNE, pending=True, limit=10, wait_s=MAX_WAIT_S)
        )
        data = document(pki, H53, G14, COMMUNE, 7000)
        answer = await a.handle_submission(InProcess(Message(data)))
        assert await a.relay_once() == 2  # the commune's mailbox row, and the link copy
        async with asyncio.timeout(MAX_WAIT_S / 2):  # well before the caller's wait ends
            found = await waiting
        assert [e.message_id for e in found] == [answer.message_id]
