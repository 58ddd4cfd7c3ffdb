"""One node: intake, relay, mailboxes and dead letters, written against the ports.

Intake takes each submission through four steps (DESIGN §3, §4):

1. **fast dedup** on the SHA-256 of the raw bytes: bytes already committed get their
   original answer at once;
2. **admission** under the policy of the source that submitted it, in a bounded worker
   pool, after the attempt has been recorded in the store, so that a package that kills
   the worker is counted and, after ``max_attempts``, dead-lettered; a transient fault
   (the store away, its disk full) takes its attempt back: it is not the package's doing;
3. **commit**: one store transaction holds the bytes, the dedup key and one outbox row
   per destination;
4. **acknowledge** the input only after the commit, and answer the submitter.

The relay then works the outbox: a mailbox row puts the package in the agency's mailbox
(unique on agency and package, so exactly once), a link row is published with a confirm.
Every row is marked done only after that.

The service does no I/O of its own: the store, the transport, the admission pool and
the clock are handed in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from exchange import reporting
from exchange.admission import Admitted
from exchange.checkpoint import checkpoint_event, make_checkpoint
from exchange.config import Credential
from exchange.directory_doc import SignedDirectory
from exchange.directory_sync import (
    DIRECTORY,
    KIND_HEADER,
    VERSION_HEADER,
    DirectoryHome,
    DirectorySync,
)
from exchange.edxml import kid, kids, message_block, text
from exchange.envelope import (
    Envelope,
    NodeKey,
    PeerKey,
    append_hop,
    envelope_hops,
    envelope_recipients,
    envelope_record,
    open_envelope,
    seal,
)
from exchange.errors import (
    AdmissionTimedOut,
    DocumentIdTaken,
    EnvelopeInvalid,
    HopLimitExceeded,
    IntakeRateLimited,
    LienthongError,
    LinkLoginMismatch,
    NotDeadLettered,
    NotTracked,
    PackageTooLarge,
    Quarantined,
    RecipientUnreachable,
    SenderFault,
    StatusUnroutable,
    StoreFull,
    SubmitterNotSender,
    TransientFault,
)
from exchange.evidence import Event, EventKind
from exchange.large import (
    CLAIM_HEADER,
    INLINE_MAX_BYTES,
    LARGE_LANE,
    BlobMover,
    Spooled,
    is_large,
)
from exchange.linkboard import CHILD, PARENT, LinkBoard
from exchange.links import (
    DIRECTORY_LANE,
    LANES,
    down_queue,
    frame,
    lane_of,
    link_target,
    outbox_for,
    package_from_envelope,
    split_target,
    unframe,
    up_gate,
    up_queue,
)
from exchange.model import BusinessType, Kind, Level, Package
from exchange.observe import NO_OBSERVER, Observer, observe_routes, since_origin
from exchange.pades import to_record
from exchange.policy import PRESETS, VerificationPolicy
from exchange.rate_limit import TokenBucket
from exchange.report_relay import ReportRelay
from exchange.routing import (
    RECALL_REQUEST,
    business_record,
    entry_targets,
    route,
    status_targets,
)
from exchange.status_view import document_status
from exchange.store import (
    DeadLetter,
    Destination,
    HeldPackage,
    Intake,
    IntakeResult,
    KnownDocument,
    OutboxItem,
    OutboxRow,
    Outcome,
    Store,
)
from exchange.topology import Topology
from exchange.tracking import Deadlines
from exchange.transport import Delivery, Message, QueueSpec, Transport, Unroutable
from exchange.upstream import UPSTREAM_PREFIX, UpstreamAgency, is_upstream, with_upstreams
from exchange.xmlsafe import parse

log = structlog.get_logger("lienthong.node")

SOURCE_HEADER = "lienthong-source"
OP_HEADER = "lienthong-op"
AS_HEADER = "lienthong-as"
PACE_FACTOR, PACE_FLOOR = 2.0, 20.0  # a rated login's queue is taken at most this fast
LOGIN_QUEUE_BYTES = 64 * 1024 * 1024  # a login's own intake queue refuses publishes past this
HTTP_CALLER = "http:"  # the user_id under which the HTTP faces hand a call to intake
REPLY_PREFIXES = ("lienthong.reply.", "amq.rabbitmq.reply-to")

AdmitFn = Callable[[bytes, VerificationPolicy], Awaitable[Admitted]]
# admission of a spooled large package, streaming from its file (bounded memory)
AdmitFileFn = Callable[[Spooled, VerificationPolicy], Awaitable[Admitted]]
CrashHook = Callable[[str], None]
# signs the delivery receipt for a package put in these mailboxes now (exchange/receipt.py)
# (row, recipients, when, the PDF signature records its envelope carries) -> the receipt
IssueReceipt = Callable[[OutboxRow, Sequence[str], datetime, Sequence[Mapping[str, Any]]], bytes]


MAX_OWED = 10_000  # packages whose taken-back attempt is remembered in memory


def _no_crash(_step: str) -> None:
    return None


@dataclass(frozen=True)
class Queues:
    """The queue names of one node (docs/wire.md, "AMQP topology")."""

    node_id: str

    @property
    def inbound(self) -> str:
        return f"lienthong.{self.node_id}.inbound"

    @property
    def requests(self) -> str:
        return f"lienthong.{self.node_id}.requests"

    @property
    def dead(self) -> str:
        return f"lienthong.{self.node_id}.dead"

    def mailbox(self, organ: str) -> str:
        """A push agency's own queue: its mail, published as it lands (docs/amqp-face.md)."""
        return f"lienthong.{self.node_id}.mailbox.{organ}"

    @property
    def gate(self) -> str:
        """The direct exchange to intake and requests: a login allowed to write to it
        reaches those two queues and no other (adapters/provision.py)."""
        return f"lienthong.{self.node_id}.gate"

    def login_gate(self, login: str) -> str:
        """A login's own gate: what it sends to intake lands in its own queue, which the
        node takes from in turn with every other login's (docs/amqp-face.md, "Fair share")."""
        return f"lienthong.{self.node_id}.gate.{login}"

    def login_inbound(self, login: str) -> str:
        return f"lienthong.{self.node_id}.inbound.{login}"


def queues_of(node_id: str, parent: str | None) -> list[str]:
    """Every queue a node declares: its own, and its side of the link to its parent (on
    the parent's broker), and its gate exchange (last); what a test or a benchmark deletes
    after a tree of nodes."""
    own = Queues(node_id)
    names = [own.inbound, own.requests, own.dead, *(up_queue(node_id, lane) for lane in LANES)]
    names.append(up_gate(node_id))
    if parent is not None:
        names += [down_queue(parent, node_id, lane) for lane in (*LANES, DIRECTORY_LANE)]
    return [*names, own.gate]


@dataclass(frozen=True)
class NodeSettings:
    node_id: str
    hosted: frozenset[str]
    parent: str | None = None
    max_attempts: int = 5
    prefetch: int = 32
    publish_timeout_s: float = 10.0
    quorum: bool = False
    relay_batch: int = 100
    relay_idle_s: float = 1.0
    # the store is asked for reports at least this often, even when this process recorded
    # none: another instance sharing the store may have, or left its own (exchange/report_relay)
    reports_recheck_s: float = 30.0
    dedup_retention: timedelta = timedelta(days=90)
    sources: Mapping[str, VerificationPolicy] | None = None
    topology: Topology | None = None  # the node tree; without it, only hosted + parent
    link_max_bytes: int = 64 * 1024 * 1024  # each link lane refuses publishes past this
    link_expiry: timedelta = timedelta(days=7)  # a copy waiting longer for its link fails
    credentials: Mapping[str, Credential] | None = None  # RabbitMQ login -> what it may do
    # callers in this process: "http:<name>" (the HTTP faces), "upstream:<name>" (bridges)
    http_credentials: Mapping[str, Credential] | None = None
    admission_timeout_s: float = 30.0
    intake_concurrency: int = 4  # submissions in flight at once (at most ``prefetch``)
    link_concurrency: int = 8  # packages in flight at once per link lane (at most ``prefetch``)
    deadlines: Deadlines | None = None  # the working calendar that flags overdue answers
    checkpoint_every_s: float = 300.0  # how often the evidence chain's head is signed
    push: frozenset[str] = frozenset()  # agencies whose mail goes to their AMQP queue too
    inline_max_bytes: int = INLINE_MAX_BYTES  # above it, a claim check (exchange/large.py)
    link_login: str | None = None  # the user_id of what this node publishes up its link
    own_login: str | None = None  # this node's login on its own broker (replays carry it)
    verify_login: bool = False  # a child's packages must come under the child's login

    @property
    def children(self) -> tuple[str, ...]:
        if self.topology is None:
            return ()
        return tuple(
            n
            for n, p in self.topology.parents.items()
            if p == self.node_id and not n.startswith(UPSTREAM_PREFIX)  # a bridge, no broker
        )

    def policy_for(self, source: str) -> VerificationPolicy:
        return (self.sources or {}).get(source, PRESETS["strict"])


@dataclass(frozen=True)
class Answer:
    """What the submitter hears back (JSON on its reply queue)."""

    outcome: str  # accepted | duplicate | conflict | refused | dead-lettered
    message_id: str | None = None
    level: str | None = None
    code: str | None = None
    reason: str | None = None
    unreachable: tuple[str, ...] | None = None  # accepted, but nothing leads to these

    def encode(self) -> bytes:
        return json.dumps(
            {k: v for k, v in self.__dict__.items() if v is not None}, ensure_ascii=False
        ).encode()

    @classmethod
    def decode(cls, body: bytes) -> Answer:
        fields = json.loads(body)
        if fields.get("unreachable") is not None:
            fields["unreachable"] = tuple(fields["unreachable"])
        return cls(**fields)


def answer_for(result: IntakeResult) -> Answer:
    if result.outcome is Outcome.COMMITTED:
        return Answer("accepted", result.message_id, result.level)
    if result.outcome is Outcome.DUPLICATE:
        return Answer("duplicate", result.message_id, result.level)
    return Answer(
        "conflict",
        result.message_id,
        code="dedup.conflict",
        reason=(
            "a different package with the same sender and DocumentId was accepted before as "
            f"message {result.message_id}"
        ),
    )


@dataclass(frozen=True)
class DirectoryKeeping:
    """What a node needs to keep its signed directory current (exchange/directory_sync)."""

    home: DirectoryHome
    kept: SignedDirectory
    signer: str  # the node whose key signs directories: the root
    reload_admission: Callable[[], Awaitable[None]]  # admission reads the new version
    check_every_s: float = 30.0


class Node:
    def __init__(
        self,
        settings: NodeSettings,
        *,
        store: Store,
        transport: Transport,
        admit: AdmitFn,
        node_key: NodeKey,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        crash: CrashHook = _no_crash,
        parent_transport: Transport | None = None,
        peer_keys: Mapping[str, PeerKey] | None = None,
        directory: DirectoryKeeping | None = None,
        receipts: IssueReceipt | None = None,
        observer: Observer = NO_OBSERVER,
        blobs: BlobMover | None = None,
        admit_file: AdmitFileFn | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer  # counts what flows (exchange/observe.py)
        self.blobs = blobs  # large packages' bytes between nodes (exchange/large.py)
        self._admit_file = admit_file  # admission streaming from a spooled file
        self._tree = settings.topology  # the directory's tree, before upstreams are added
        self._upstream_agencies: dict[str, tuple[UpstreamAgency, ...]] = {}
        self._receipts = receipts
        self._checkpointed = -1  # the seq of this run's last checkpoint
        self._mail = asyncio.Event()  # set, and replaced, as mail lands in mailboxes
        self.store = store
        self.transport = transport
        self.parent_transport = parent_transport or transport  # the parent's broker
        self.peer_keys = dict(peer_keys or {})
        self._admit = admit
        self._key = node_key
        # where pinned node keys are read again from (the node's files), when a neighbour
        # signs with a key not pinned yet; None: never
        self.peer_keys_source: Callable[[], Mapping[str, PeerKey]] | None = None
        self._peer_keys_read = 0.0
        self._clock = clock
        self._new_id = new_id
        self._crash = crash
        self.queues = Queues(settings.node_id)
        self._outbox_ready = asyncio.Event()
        self._large_ready = asyncio.Event()  # the large lanes' relay: new rows, maybe
        self.links = LinkBoard(clock)
        if settings.parent is not None:
            self.links.know(settings.parent, PARENT)
        for child in settings.children:
            self.links.know(child, CHILD)
        self.drain: Drain | None = None  # maintenance: no new packages taken
        self._intake_open = asyncio.Event()
        self._intake_open.set()
        self.in_flight = 0  # submissions being admitted right now
        # attempts taken back (a transient fault is not the package's doing) that the
        # store could not write, a full disk being the fault: deducted at the next attempt
        self._owed: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}  # an AMQP login's rate (its user_id)
        self._directory = directory
        self.reports = ReportRelay(
            settings.node_id,
            store=store,
            key=node_key,
            send=self._send_reports,
            topology=lambda: self.settings.topology,
            peer_keys=lambda: self.peer_keys,
            recheck_s=settings.reports_recheck_s,
        )
        self.directory_sync = (
            DirectorySync(
                settings.node_id,
                signer=directory.signer,
                keys=self.peer_keys,
                home=directory.home,
                transport=self.transport,
                kept=directory.kept,
                apply=self._apply_directory,
                children=lambda: self.settings.children,
                acceptable=self._directory_acceptable,
                publish_timeout_s=settings.publish_timeout_s,
            )
            if directory is not None
            else None
        )

    # --- set-up ---------------------------------------------------------------------

    async def declare(self) -> None:
        # The node dead-letters a package itself after max_attempts. The broker's delivery
        # limit is only the backstop, set well above, and it dead-letters to the same queue
        # (at-least-once) rather than dropping.
        q = self.settings.quorum
        limit = self.settings.max_attempts * 4 + 10 if q else None
        await self.transport.declare(
            QueueSpec(
                self.queues.inbound,
                quorum=q,
                delivery_limit=limit,
                dead_letter_to=self.queues.dead if q else None,
                exchange=self.queues.gate,
            )
        )
        await self.transport.declare(
            QueueSpec(self.queues.requests, quorum=q, exchange=self.queues.gate)
        )
        for login in self._intake_logins():  # each its own queue: one cannot crowd the rest
            gate = self.queues.login_gate(login)
            await self.transport.declare(
                QueueSpec(
                    self.queues.login_inbound(login),
                    quorum=q,
                    delivery_limit=limit,
                    dead_letter_to=self.queues.dead if q else None,
                    exchange=gate,
                    routing_key=self.queues.inbound,
                    max_length_bytes=LOGIN_QUEUE_BYTES,
                )
            )
            await self.transport.declare(QueueSpec(self.queues.requests, quorum=q, exchange=gate))
        await self.transport.declare(QueueSpec(self.queues.dead, quorum=q))
        for organ in sorted(self.settings.push & self.settings.hosted):
            await self.transport.declare(QueueSpec(self.queues.mailbox(organ), quorum=q))
        if self.settings.topology is None:
            return  # no tree, no links to children
        # link lanes are replicated like the rest on a cluster: a classic lane lives on one
        # broker node, and with it down the node could not even declare its queues again
        me, bound = self.settings.node_id, self.settings.link_max_bytes
        for lane in LANES:
            await self.transport.declare(
                QueueSpec(
                    up_queue(me, lane), quorum=q, max_length_bytes=bound, exchange=up_gate(me)
                )
            )
            for child in self.settings.children:
                await self.transport.declare(
                    QueueSpec(down_queue(me, child, lane), quorum=q, max_length_bytes=bound)
                )
        for child in self.settings.children:  # the directory's own lane, unbounded: it is small
            await self.transport.declare(QueueSpec(down_queue(me, child, DIRECTORY_LANE), quorum=q))

    async def declare_parent_link(self) -> None:
        """The child's side of its link, on the parent's broker (the child opens it)."""
        parent, bound = self.settings.parent, self.settings.link_max_bytes
        assert parent is not None
        q, me = self.settings.quorum, self.settings.node_id
        for lane in LANES:
            await self.parent_transport.declare(
                QueueSpec(
                    up_queue(parent, lane),
                    quorum=q,
                    max_length_bytes=bound,
                    exchange=up_gate(parent),
                )
            )
            await self.parent_transport.declare(
                QueueSpec(down_queue(parent, me, lane), quorum=q, max_length_bytes=bound)
            )
        await self.parent_transport.declare(
            QueueSpec(down_queue(parent, me, DIRECTORY_LANE), quorum=q)
        )

    async def run(self) -> None:
        """Intake, relay, mailbox requests and housekeeping, until cancelled."""
        await self.store.migrate()
        await self.declare()
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self.consume_intake(), name="intake")
            tasks.create_task(self.relay_forever(), name="relay")
            tasks.create_task(self.relay_large_forever(), name="relay-large")
            tasks.create_task(self.serve_requests(), name="requests")
            tasks.create_task(self.housekeeping(), name="housekeeping")
            tasks.create_task(self.checkpoint_forever(), name="checkpoints")
            if self.directory_sync is not None and self._directory is not None:
                tasks.create_task(
                    self.directory_sync.run(self._directory.check_every_s), name="directory"
                )
            if self.settings.topology is not None:
                for lane in LANES:
                    tasks.create_task(
                        self.consume_link(
                            self.transport, up_queue(self.settings.node_id, lane), lane
                        ),
                        name=f"from-children-{lane}",
                    )
                    if self.settings.parent is not None:
                        tasks.create_task(
                            self.consume_parent_link(lane), name=f"from-parent-{lane}"
                        )
                if self.settings.parent is not None and self.directory_sync is not None:
                    tasks.create_task(
                        self.consume_parent_link(DIRECTORY_LANE), name="from-parent-directory"
                    )

    # --- intake ---------------------------------------------------------------------

    def _intake_logins(self) -> list[str]:
        """The logins with an intake queue of their own: every [credentials] login."""
        return sorted(self.settings.credentials or {})

    async def consume_intake(self) -> None:
        """Take submissions while the node is not draining; a drain stops taking them,
        lets those in flight finish, and gives the rest back to the queue.

        The node's inbound queue and each login's own take turns at one set of slots: a
        login that floods fills its own queue, and a submission of another login waits for
        one slot, not behind the flood (docs/amqp-face.md, "Fair share")."""
        queues = [self.queues.inbound, *map(self.queues.login_inbound, self._intake_logins())]
        while True:
            await self._intake_open.wait()
            slots = asyncio.Semaphore(self.settings.intake_concurrency)
            alone = asyncio.Lock()
            paces = self._intake_paces()
            async with asyncio.TaskGroup() as group:
                for queue in queues:
                    group.create_task(
                        self._consume_until_drained(queue, slots, alone, paces.get(queue))
                    )

    def _intake_paces(self) -> dict[str, TokenBucket]:
        """How fast the node takes from each rated login's own queue: twice its rate (at
        least 20 a second, bursts of twice that, so never slower than the login's own
        bucket lets it send), so that what it sends past its rate is still answered
        ``intake.rate_limited`` soon, but a flood costs the node a bounded share of its
        time; the rest of a flood waits in the login's own queue, at no cost."""
        paces = {}
        for login, credential in (self.settings.credentials or {}).items():
            if credential.rate_per_s is not None:
                work = max(PACE_FLOOR, PACE_FACTOR * credential.rate_per_s)
                paces[self.queues.login_inbound(login)] = TokenBucket(work, 2 * work)
        return paces

    async def _consume_until_drained(
        self,
        queue: str,
        slots: asyncio.Semaphore,
        alone: asyncio.Lock,
        pace: TokenBucket | None = None,
    ) -> None:
        """Up to ``intake_concurrency`` submissions at once (``slots``, shared by every
        intake queue), each owned by this task group: admission of one overlaps the store
        and broker round trips of the others.

        A redelivered submission may be the one that killed the process, so it is taken
        alone, once the others in flight are done: a crash then counts an attempt against
        it only, never against an innocent package that happened to be in flight."""
        inbound = self.transport.consume(queue, prefetch=self.settings.prefetch)
        backoff = Backoff()
        width = self.settings.intake_concurrency
        try:
            async with asyncio.TaskGroup() as group:
                async for delivery in inbound:
                    if self.drain is not None:  # back to the queue, untouched
                        await _requeue(delivery)
                        break
                    if delivery.redelivered:
                        async with alone:  # one queue at a time gathers every slot
                            for _ in range(width):  # drain
                                await slots.acquire()
                            for _ in range(width - 1):
                                slots.release()
                        await self._intake_one(delivery, slots, backoff)
                        continue
                    while pace is not None and not pace.take():  # noqa: ASYNC110 (a clock)
                        await asyncio.sleep(pace.wait_s())
                    await slots.acquire()
                    group.create_task(self._intake_one(delivery, slots, backoff))
        finally:  # only now, with the acks of those in flight done, is the channel closed
            await inbound.aclose()

    async def _intake_one(
        self, delivery: Delivery, slots: asyncio.Semaphore, backoff: Backoff
    ) -> None:
        self.in_flight += 1
        try:
            await self._submit_holding(delivery, backoff)
            backoff.reset()
        except TransientFault as fault:  # the store or the broker is away: wait, retry
            log.warning("intake.transient", code=fault.code, error=fault.message)
            await _requeue(delivery)
            await backoff.wait()
        except LienthongError:
            raise  # permanent: stop, and let the supervisor and an operator see it
        except Exception as exc:  # a bug met by one package: count it, requeue, go on
            log.exception("intake.crashed", node=self.settings.node_id)
            digest = hashlib.sha256(delivery.message.body).hexdigest()
            try:
                await self.store.record_attempt(digest, f"{type(exc).__name__}: {exc}", delta=0)
            except TransientFault as fault:  # counted by begin_attempt all the same
                log.warning("intake.not_recorded", code=fault.code, error=fault.message)
            await _requeue(delivery)
        finally:
            self.in_flight -= 1
            slots.release()

    async def _submit_holding(self, delivery: Delivery, backoff: Backoff) -> None:
        """``handle_submission``, tried again in place for as long as the store's disk is
        full: a person frees the space. A delivery given back at every try would count
        towards a quorum queue's delivery limit, whose dead-lettering is for poison, not
        for a disk (after a weekend of full disk, healthy packages would sit in the dead
        queue); held, the intake's slots fill and the node takes nothing new meanwhile.
        The rate of the submitter's login is charged once, at the first try."""
        first = True
        while True:
            try:
                await self.handle_submission(delivery, charge_rate=first)
            except StoreFull as fault:
                log.warning("intake.disk_full", node=self.settings.node_id, error=fault.message)
                first = False
                await backoff.wait()
            else:
                return

    async def _take_back(self, digest: str) -> None:
        """The attempt ``begin_attempt`` counted is not the package's: a transient fault
        (a CRL to renew, the store away or its disk full) is not, and must never bring it
        to ``max_attempts`` and the dead letters. When even this write fails, the count is
        owed, and deducted at the package's next attempt."""
        owed = self._owed.pop(digest, 0) + 1
        try:
            await self.store.record_attempt(digest, delta=-owed)
        except TransientFault:
            if len(self._owed) < MAX_OWED:
                self._owed[digest] = owed

    async def handle_submission(self, delivery: Delivery, *, charge_rate: bool = True) -> Answer:
        message = delivery.message
        data = message.body
        credential = self.credential_of(message)
        source = self.source_of(message, credential)
        digest = hashlib.sha256(data).hexdigest()
        started = time.perf_counter()
        bound = log.bind(
            digest=digest[:16],
            source=source,
            node=self.settings.node_id,
            document_id=None,
            sender=None,
            recipients=None,
        )

        # a login's rate is charged once per submission it can be told about: never again
        # for a redelivery (its first try was charged), never for one without reply_to
        # (refused without a word, the package would be lost)
        rated = charge_rate and message.reply_to is not None and not delivery.redelivered
        limited = self._over_rate(message.user_id) if rated else None
        if limited is not None:  # answered at once, before the store or admission is asked
            answer = Answer("refused", code=limited.code, reason=limited.message)
            await self._settle(delivery, answer, bound, source, started)
            return answer

        begun = await self.store.begin_attempt(digest)
        known = begun.known
        if known is not None:
            bound = bound.bind(sender=known.sender)
            claimed = message.headers.get(AS_HEADER)
            if known.sender is not None and not self._may_send_as(
                credential, claimed, known.sender
            ):
                answer = Answer(
                    "refused",
                    code=SubmitterNotSender.code,
                    reason=f"submitted as {claimed}, but the package is from {known.sender}",
                )
            else:
                answer = answer_for(known)
            self._owed.pop(digest, None)  # known: its count is over
            await self._settle(delivery, answer, bound, source, started)
            return answer

        held = begun.held
        if held is not None:  # a poison package is not tried again until an operator replays it
            self._owed.pop(digest, None)
            answer = Answer(
                "dead-lettered",
                code="intake.poison",
                reason=f"these bytes are held as dead letter {held} for an operator",
            )
            await self._settle(delivery, answer, bound, source, started)
            return answer

        attempts = begun.count - self._owed.get(digest, 0)
        if attempts > self.settings.max_attempts:
            self._owed.pop(digest, None)
            answer = await self._dead_letter(data, source, attempts)
            await self._settle(delivery, answer, bound, source, started)
            return answer

        self._crash(f"admit:{digest}")
        try:
            admitted = await self._admit_in_time(data, self.settings.policy_for(source))
            package = admitted.package
            bound = bound.bind(
                document_id=package.document_id,
                sender=package.sender.organ_id,
                recipients=len(package.recipients),
            )
            claimed = message.headers.get(AS_HEADER)
            if not self._may_send_as(credential, claimed, package.sender.organ_id):
                raise SubmitterNotSender(
                    f"this caller ({message.user_id or 'anonymous'}"
                    + (f", submitting as {claimed}" if claimed else "")
                    + f") may not send for {package.sender.organ_id}"
                )
            document = None
            if package.kind is Kind.STATUS and package.document_id:
                document = await self.store.document(package.document_id)
            arrived = source if source.startswith(UPSTREAM_PREFIX) else None
            if arrived is not None:
                self._check_upstream_sender(arrived, package.sender.organ_id)
            targets, outbox, unreachable = self._plan_entry(package, document, arrived)
        except SenderFault as fault:
            await self.store.clear_attempts(digest)
            self._owed.pop(digest, None)
            answer = Answer("refused", code=fault.code, reason=fault.message)
            await self._settle(delivery, answer, bound, source, started)
            return answer
        except TransientFault:
            # not the package's doing (a CRL to renew, the store away): take the attempt
            # back and let the consumer requeue it with backoff
            await self._take_back(digest)
            raise
        except LienthongError as fault:
            # permanent: tried again (the attempt is counted), then dead-lettered
            await self.store.record_attempt(digest, f"{fault.code}: {fault.message}", delta=0)
            bound.warning("intake.retry", code=fault.code, error=fault.message, attempt=attempts)
            await delivery.reject(requeue=True)
            return Answer("retry", code=fault.code, reason=fault.message)

        quarantined = _held_reason(package)
        try:
            result = await self._commit(
                data, package, source, outbox, targets, unreachable, quarantined
            )
        except TransientFault:  # the store away or its disk full: nothing was committed
            await self._take_back(digest)
            raise
        self._owed.pop(digest, None)  # the commit ended the count
        self._crash("after-commit")
        if result.outcome is Outcome.TAKEN:
            # a new document may not reuse a DocumentId another sender's document carried:
            # statuses about the first would otherwise be at the mercy of the second
            await self.store.clear_attempts(digest)
            taken = DocumentIdTaken(
                f"DocumentId {package.document_id!r} already names a document from "
                f"{result.sender} (message {result.message_id})"
            )
            answer = Answer("refused", code=taken.code, reason=taken.message)
            await self._settle(delivery, answer, bound, source, started)
            return answer
        if result.outcome is not Outcome.COMMITTED:  # a conflict is an answer, not a failure
            await self.store.clear_attempts(digest)
        answer = answer_for(result)
        if quarantined is not None and result.outcome is Outcome.COMMITTED:
            answer = replace(answer, reason=f"held for an operator: {quarantined}")
        if unreachable and result.outcome is Outcome.COMMITTED:
            answer = replace(
                answer,
                unreachable=unreachable,
                reason=f"not sent to {', '.join(unreachable)}: no node of this axis hosts "
                + ("it" if len(unreachable) == 1 else "them"),
            )
        await self._settle(
            delivery,
            answer,
            bound,
            source,
            started,
            outcome="quarantined" if quarantined and answer.outcome == "accepted" else None,
        )
        if result.outcome is Outcome.COMMITTED and quarantined is None:
            observe_routes(self.observer, outbox)
        self._wake_relays()
        return answer

    async def handle_spooled(
        self, spooled: Spooled, *, user_id: str | None, as_organ: str | None = None
    ) -> Answer:
        """A large package a caller of this process (the HTTP face) spooled to a file in
        the store's spool folder: admitted streaming from the file, committed by taking the
        file over, its link copies sent by claim check. The caller is answered at once (no
        queue, no attempt counting: a failure is its answer). The file is gone afterwards."""
        started = time.perf_counter()
        message = Message(b"", user_id=user_id, headers={AS_HEADER: as_organ} if as_organ else {})
        credential = self.credential_of(message)
        source = self.source_of(message, credential)
        bound = log.bind(
            digest=spooled.digest[:16],
            source=source,
            node=self.settings.node_id,
            document_id=None,
            sender=None,
            recipients=None,
        )
        try:
            answer = await self._take_spooled(spooled, credential, source, as_organ)
        finally:
            spooled.path.unlink(missing_ok=True)  # taken over by the store, or not wanted
        await self._settle(_InProcess(message), answer, bound, source, started)
        return answer

    async def _take_spooled(
        self, spooled: Spooled, credential: Credential | None, source: str, claimed: str | None
    ) -> Answer:
        known = await self.store.find_digest(spooled.digest)
        if known is not None:
            if known.sender is not None and not self._may_send_as(
                credential, claimed, known.sender
            ):
                return Answer(
                    "refused",
                    code=SubmitterNotSender.code,
                    reason=f"submitted as {claimed}, but the package is from {known.sender}",
                )
            return answer_for(known)
        if self._admit_file is None:
            raise PackageTooLarge(
                f"this node admits no package above its inline cap of "
                f"{self.settings.inline_max_bytes} bytes"
            )
        try:
            # a deadline as for any admission, and time to read the bytes at 10 MB/s
            seconds = self.settings.admission_timeout_s + spooled.size / 10_000_000
            try:
                async with asyncio.timeout(seconds):
                    admitted = await self._admit_file(spooled, self.settings.policy_for(source))
            except TimeoutError:
                raise AdmissionTimedOut(f"admission took longer than {seconds:.0f} s") from None
            package = admitted.package
            if not self._may_send_as(credential, claimed, package.sender.organ_id):
                raise SubmitterNotSender(f"this caller may not send for {package.sender.organ_id}")
            document = None
            if package.kind is Kind.STATUS and package.document_id:
                document = await self.store.document(package.document_id)
            targets, outbox, unreachable = self._plan_entry(package, document)
        except SenderFault as fault:
            return Answer("refused", code=fault.code, reason=fault.message)
        quarantined = _held_reason(package)
        result = await self._commit(
            spooled.path, package, source, outbox, targets, unreachable, quarantined
        )
        if result.outcome is Outcome.TAKEN:
            taken = DocumentIdTaken(
                f"DocumentId {package.document_id!r} already names a document from "
                f"{result.sender} (message {result.message_id})"
            )
            return Answer("refused", code=taken.code, reason=taken.message)
        answer = answer_for(result)
        if quarantined is not None and result.outcome is Outcome.COMMITTED:
            answer = replace(answer, reason=f"held for an operator: {quarantined}")
        if result.outcome is Outcome.COMMITTED and quarantined is None:
            observe_routes(self.observer, outbox)
        self._wake_relays()
        return answer

    async def _admit_in_time(self, data: bytes, policy: VerificationPolicy) -> Admitted:
        """Admission under a deadline: a package that makes it hang is counted like one
        that crashes it (and so, in the end, dead-lettered), instead of stalling intake."""
        try:
            async with asyncio.timeout(self.settings.admission_timeout_s):
                return await self._admit(data, policy)
        except TimeoutError:
            raise AdmissionTimedOut(
                f"admission took longer than {self.settings.admission_timeout_s} s"
            ) from None

    def _over_rate(self, user_id: str | None) -> IntakeRateLimited | None:
        """The refusal of a submission past its AMQP login's ``rate_per_s``, or None. The
        HTTP faces limit their callers themselves; an unknown login has no rate."""
        credential = (self.settings.credentials or {}).get(user_id or "")
        if credential is None or credential.rate_per_s is None or user_id is None:
            return None
        rate = credential.rate_per_s
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = TokenBucket(rate, max(1.0, 2 * rate))
        if bucket.take():
            return None
        return IntakeRateLimited(
            f"{user_id} may submit {rate:g} packages a second; "
            f"submit again in {max(0.1, bucket.wait_s()):.1f} s"
        )

    def credential_of(self, message: Message) -> Credential | None:
        """The caller's credential, by the user_id RabbitMQ validated (or, for a call
        through this node's HTTP faces, the credential they authenticated); None if
        unknown."""
        if not message.user_id:
            return None
        found = (self.settings.credentials or {}).get(message.user_id)
        if found is None and message.user_id.startswith((HTTP_CALLER, UPSTREAM_PREFIX)):
            found = (self.settings.http_credentials or {}).get(message.user_id)
        return found

    def source_of(self, message: Message, credential: Credential | None) -> str:
        """Which source (so which verification policy) judges the message. A header may
        name it only for a trusted credential: otherwise a caller could pick a lax policy."""
        if credential is None:
            return "amqp"
        named = message.headers.get(SOURCE_HEADER)
        if credential.trusted and isinstance(named, str):
            return named
        return credential.source

    def _may_send_as(self, credential: Credential | None, claimed: object, sender: str) -> bool:
        if claimed is not None and claimed != sender:
            return False
        if credential is not None:  # a known caller: for its agencies only
            return credential.may_act_for(sender)
        return not self.settings.credentials  # configured: only known callers

    def _plan_entry(
        self, package: Package, document: KnownDocument | None, arrived_from: str | None = None
    ) -> tuple[tuple[str, ...], tuple[OutboxItem, ...], tuple[str, ...]]:
        lane = (
            LARGE_LANE
            if is_large(package.size, self.settings.inline_max_bytes)
            else lane_of(package.priority)
        )
        """The recipients an entered package goes to, where each copy goes, and the
        recipients nothing leads to (the package is refused when that is all of them).
        ``arrived_from`` is the upstream it was fetched from: nothing goes back there."""
        topology = self.settings.topology
        if topology is None:
            outbox, unreachable = route(
                package, hosted=self.settings.hosted, parent=self.settings.parent, document=document
            )
            targets = tuple(o.organ_id for o in package.recipients if o.organ_id not in unreachable)
            given_up = tuple(
                OutboxItem(
                    Destination.MAILBOX,
                    organ,
                    failure=f"unknown recipient: not hosted on {self.settings.node_id}, "
                    "which has no link that leads there",
                )
                for organ in unreachable
            )
            return targets, outbox + given_up, unreachable
        if package.kind is Kind.STATUS:
            if document is None:  # resolved upstream, where the document passed
                if self.settings.parent is None:
                    raise StatusUnroutable(
                        f"no document {package.document_id!r} has passed through this node"
                    )
                return (
                    (),
                    (
                        OutboxItem(
                            Destination.LINK,
                            link_target(self.settings.parent, lane),
                        ),
                    ),
                    (),
                )
            targets = status_targets(package, document)
        else:
            targets = entry_targets(package)
        plan = topology.plan(self.settings.node_id, targets, arrived_from)
        if plan.unknown and not (plan.mailboxes or plan.links):
            raise RecipientUnreachable(
                f"no node of this axis hosts {', '.join(plan.unknown)}; nothing was sent"
            )
        reached = tuple(t for t in targets if t not in plan.unknown)
        outbox = outbox_for(plan, lane, self.settings.node_id)
        return reached, outbox, plan.unknown

    async def _commit(
        self,
        data: bytes | Path,
        package: Package,
        source: str,
        outbox: tuple[OutboxItem, ...],
        targets: tuple[str, ...],
        unreachable: tuple[str, ...] = (),
        held: str | None = None,
    ) -> IntakeResult:
        """One transaction (it also ends the attempt count), with its evidence: the
        package accepted here, a status it carries, the recipients nothing leads to."""
        message_id = self._new_id()
        now = self._clock()
        me = self.settings.node_id
        events: list[Event] = [
            reporting.accepted(
                package, message_id, me, now, source, [*targets, *unreachable], held=held
            )
        ]
        if package.status is not None:
            events.append(
                reporting.status(
                    message_id=message_id,
                    document_id=package.document_id,
                    author=package.sender.organ_id,
                    digest=package.digest,
                    code=package.status.code,
                    sent_at=package.status.timestamp,
                    description=package.status.description,
                    here=me,
                    at=now,
                )
            )
        events += reporting.replaced(package, message_id, me, now)
        events += [
            reporting.failed(
                message_id=message_id,
                document_id=package.document_id,
                sender=package.sender.organ_id,
                organ=organ,
                reason=f"unknown recipient: no node of this axis hosts {organ}",
                here=me,
                at=now,
                origin=None,
            )
            for organ in unreachable
        ]
        envelope = seal(
            self._key,
            message_id=message_id,
            data=(package.digest, package.size) if isinstance(data, Path) else data,
            kind=package.kind.value,
            sender=package.sender.organ_id,
            recipients=list(targets),
            document_id=package.document_id,
            level=package.level.value,
            when=now,
            status_code=package.status.code if package.status else None,
            status_at=reporting.status_time(package.status.timestamp) if package.status else None,
            business=business_record(package),
            pdf_signatures=[to_record(sig) for sig in package.pdf_signatures],
            bridged=self._handed_upstream(targets),
        )
        return await self.store.commit_intake(
            Intake(
                message_id=message_id,
                package=package,
                data=data,
                source=source,
                envelope=envelope,
                outbox=outbox,
                received_at=now,
                events=tuple(events),
                held=held,
            )
        )

    async def _dead_letter(self, data: bytes, source: str, attempts: int) -> Answer:
        digest = hashlib.sha256(data).hexdigest()
        last_error = await self.store.attempt_error(digest)
        reason = f"processing failed {attempts - 1} times; held for an operator" + (
            f"; last error: {last_error}" if last_error else " (the process died each time)"
        )
        # the store first: it is what operators list and replay from, and it holds the
        # bytes once however often this runs; the dead queue is the broker-side copy
        dead_id, created = await self.store.add_dead_letter(data, source, reason, attempts - 1)
        if created:
            await self.transport.publish(
                self.queues.dead,
                Message(
                    body=data,
                    headers={
                        SOURCE_HEADER: source,
                        "lienthong-reason": reason[:1000],
                        "lienthong-attempts": attempts - 1,
                        "lienthong-dead-letter": dead_id,
                    },
                ),
                timeout=self.settings.publish_timeout_s,
            )
        await self.store.clear_attempts(digest)
        return Answer(
            "dead-lettered", code="intake.poison", reason=f"{reason} (dead letter {dead_id})"
        )

    async def _settle(
        self,
        delivery: Delivery,
        answer: Answer,
        bound: structlog.typing.FilteringBoundLogger,
        source: str,
        started: float,
        *,
        outcome: str | None = None,
    ) -> None:
        """Answer the submitter (if it asked), then acknowledge the input; then count it
        and write its one ``package`` line. ``started``: when intake took it
        (``time.perf_counter``); ``outcome``, if given, stands for the answer's in the line."""
        message = delivery.message
        unanswered = None
        if message.reply_to and message.reply_to.startswith(REPLY_PREFIXES):
            try:
                await self.transport.publish(
                    message.reply_to,
                    Message(
                        answer.encode(), correlation_id=message.correlation_id or message.message_id
                    ),
                    timeout=self.settings.publish_timeout_s,
                )
            except LienthongError as exc:  # the submitter left; the outcome stands
                unanswered = exc.message
        self._crash("before-ack")
        await delivery.ack()
        seconds = time.perf_counter() - started
        if answer.outcome == "accepted":
            self.observer.admitted(source, seconds)
        elif answer.code is not None:
            self.observer.refused(answer.code, seconds)
        bound.info(
            "package",
            outcome=outcome or answer.outcome,
            message_id=answer.message_id,
            verification=answer.level,  # "level" is the log level
            code=answer.code,
            ms=round(seconds * 1000, 1),
            **({"answer_undelivered": unanswered} if unanswered else {}),
        )

    # --- relay ----------------------------------------------------------------------

    async def relay_once(self) -> int:
        """One round over the outbox, oldest rows first, in batches. A link that refuses
        is skipped for the rest of the round, and the rows behind its backlog still go: a
        full lane to an offline child holds up no other link and no mailbox."""
        blocked: set[str] = set()  # links that refused this round: their rows wait, others go
        moved = 0
        for _ in range(RELAY_BATCHES_PER_ROUND):  # then a new round tries the refusers again
            rows = await self.store.pending_outbox(
                self.settings.relay_batch,
                skip_targets=blocked | self._large_targets(),
                skip_prefix=UPSTREAM_PREFIX,
            )
            moved += await self._relay_batch(rows, blocked)
            if len(rows) < self.settings.relay_batch:
                break
        return moved

    def _large_targets(self) -> set[str]:
        """The large lanes of this node's links: their copies go by claim check, one at a
        time per link, in ``relay_large_once``, never holding up the other lanes."""
        neighbours = [*self.settings.children]
        if self.settings.parent is not None:
            neighbours.append(self.settings.parent)
        return {link_target(n, LARGE_LANE) for n in neighbours}

    async def relay_large_once(self) -> int:
        """Each large copy waiting for a link: to the parent, its bytes pushed first (a
        transfer this node opens); to a child, the claim only (the child pulls). Then its
        claim, the envelope alone, on the link's large lane. A link that fails waits."""
        expired_before = self._clock() - self.settings.link_expiry
        counts = await asyncio.gather(
            *(self._relay_large_link(t, expired_before) for t in sorted(self._large_targets()))
        )
        return sum(counts)

    async def _relay_large_link(self, target: str, expired_before: datetime) -> int:
        """One link's large lane: its copies in order, while the link takes them; each
        taken from the store just before its transfer (a shared store leases it to this
        instance from then on, not for the length of the copies before it)."""
        moved = 0
        for _ in range(self.settings.relay_batch):
            claimed = await self.store.pending_outbox(1, only_prefix=target)
            if not claimed:
                break
            (row,) = claimed
            neighbour = split_target(row.target)[0]
            role = PARENT if neighbour == self.settings.parent else CHILD
            try:
                await self._send_claim(row, neighbour)
            except TransientFault as exc:
                log.info("large.waiting", target=row.target, error=exc.message)
                self.links.down(neighbour, role, exc.message)
                if row.created_at is not None and row.created_at < expired_before:
                    await self._give_up(row, _expired(row, self.settings.link_expiry))
                    moved += 1
                break
            except LienthongError as fault:  # the transfer cannot complete: say so
                reason = f"its bytes could not be sent to {neighbour}: {fault.message}"
                await self._give_up(row, reason)
                moved += 1
                continue
            self.links.up(neighbour, role)
            await self.store.finish_outbox([], [row.id])
            moved += 1
        return moved

    async def _give_up(self, row: OutboxRow, reason: str) -> None:
        """A copy given up, with its reason, for each recipient behind it at the origin."""
        events = await self._failed_behind(row, reason)
        await self.store.finish_outbox([], [], [(row.id, reason)], events)
        self.reports.note(events)
        log.warning("large.failed", message_id=row.message_id, target=row.target, reason=reason)

    async def _send_claim(self, row: OutboxRow, neighbour: str) -> None:
        wire = await self.store.envelope(row.message_id)
        record = envelope_record(wire)
        if neighbour == self.settings.parent:
            if self.blobs is None:
                raise TransientFault("no transfer to the parent is configured for large packages")
            path = await self.store.package_file(row.digest)
            if path is None:
                raise TransientFault("this store keeps no file to send the bytes from")
            await self.blobs.push(neighbour, path, row.digest, int(record["size"]))
        else:  # the child pulls: its bytes are offered to it first
            if self.blobs is None:
                raise TransientFault("no transfers are configured for large packages")
            path = await self.store.package_file(row.digest)
            if path is None:
                raise TransientFault("this store keeps no file to offer the bytes from")
            await self.blobs.offer(neighbour, path, row.digest, int(record["size"]))
        headers: dict[str, str | int] = {CLAIM_HEADER: row.digest}
        if self.directory_sync is not None:
            headers[VERSION_HEADER] = self.directory_sync.version
        message = Message(frame(wire, b""), message_id=row.message_id, headers=headers)
        await self._publish_to(neighbour, LARGE_LANE, message)

    def _wake_relays(self) -> None:
        self._outbox_ready.set()
        self._large_ready.set()

    async def relay_large_forever(self) -> None:
        while True:
            self._large_ready.clear()
            try:
                moved = await self.relay_large_once()
            except LienthongError as exc:
                log.warning("large.retry", code=exc.code, error=exc.message)
                moved = 0
            if not moved:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.relay_idle_s):
                        await self._large_ready.wait()

    async def _publish_all(
        self, rows: Sequence[OutboxRow], blocked: set[str]
    ) -> dict[int, BaseException | None]:
        """The batch's link copies published together, their confirms awaited together
        (one round trip for the batch, not one per copy); per row, None or what its
        publish raised. Copies on one link may arrive in another order than the batch's:
        a receiving node takes a lane's packages several at once anyway, and a recall
        that overtakes its document still holds it back (the tombstone)."""
        going = [
            row
            for row in rows
            if row.destination is not Destination.MAILBOX and row.target not in blocked
        ]
        gate = asyncio.Semaphore(PUBLISH_AT_ONCE)  # bytes read and framed for these only

        async def publish(row: OutboxRow) -> None:
            async with gate:
                await self._publish_on_link(row)

        outcomes = await asyncio.gather(*(publish(row) for row in going), return_exceptions=True)
        found: dict[int, BaseException | None] = {}
        for row, outcome in zip(going, outcomes, strict=True):
            if isinstance(outcome, BaseException) and not isinstance(
                outcome, TransientFault | KeyError | OSError
            ):
                raise outcome  # a bug, or a cancellation: as if it had been awaited alone
            found[row.id] = outcome if isinstance(outcome, BaseException) else None
        return found

    async def _relay_batch(self, rows: Sequence[OutboxRow], blocked: set[str]) -> int:
        done: list[int] = []
        failed: list[tuple[int, str]] = []
        deliveries: list[tuple[str, str]] = []
        events: list[Event] = []
        expired_before = self._clock() - self.settings.link_expiry
        # a revoke in this batch holds back its document for that agency wherever it stands
        # in the batch: the rows' mailbox writes all wait for the batch's one transaction
        withdrawing = {row.id for row in rows if await self._withdrawing(row)}
        revoked = {
            (row.about or row.document_id, row.sender, row.target)
            for row in rows
            if row.id in withdrawing
        }
        published = await self._publish_all(rows, blocked)
        refused: set[str] = set()  # neighbours that refused a copy of this batch
        for index, row in enumerate(rows):
            if row.destination is Destination.MAILBOX:
                key = (row.document_id, row.sender, row.target)
                if (
                    row.business != REVOKE
                    and row.id not in withdrawing
                    and (row.revoked or key in revoked)
                ):
                    reason = "revoked by its sender before it arrived"
                    failed.append((row.id, reason))
                    events.append(self._revoked(row, row.message_id, row.target, reason))
                    continue
                if row.id in withdrawing:
                    events += await self._withdraw(row)
                    if row.business == UPDATE:  # taken off the update: nothing to deliver
                        done.append(row.id)
                        continue
                deliveries.append((row.target, row.message_id))  # written with the marks
            else:
                waiting = row.id not in published  # its link refused in an earlier batch
                if not waiting:
                    neighbour = split_target(row.target)[0]
                    role = PARENT if neighbour == self.settings.parent else CHILD
                    try:
                        if (outcome := published[row.id]) is not None:
                            raise outcome
                    except TransientFault as exc:
                        log.info("link.waiting", target=row.target, error=exc.message)
                        self.links.down(neighbour, role, exc.message)
                        blocked.add(row.target)
                        refused.add(neighbour)
                        waiting = True
                    except (KeyError, OSError):  # the row's bytes are gone: a person must look
                        log.exception("relay.row_broken", row=row.id, message_id=row.message_id)
                        blocked.add(row.target)
                        continue
                    else:
                        if neighbour not in refused:  # up, unless it refused in this batch
                            self.links.up(neighbour, role)
                if waiting:
                    # a copy that cannot go now is given up once it has waited too long,
                    # judged from the store's record, never a broker TTL that drops silently
                    if row.created_at is not None and row.created_at < expired_before:
                        reason = _expired(row, self.settings.link_expiry)
                        failed.append((row.id, reason))
                        events += await self._failed_behind(row, reason)
                        log.warning("link.expired", message_id=row.message_id, target=row.target)
                    continue
                self._crash("after-publish")
            done.append(row.id)
            if index == len(rows) // 2:
                self._crash("mid-relay")
        events += await self._delivery_receipts(rows, deliveries)
        # the mailbox rows, the done marks and their evidence in one transaction: a crash
        # before it leaves all to be done again, and a mailbox holds each package once
        await self.store.finish_outbox(deliveries, done, failed, events)
        self.reports.note(events)
        if deliveries:
            self._mail.set()  # long-polling readers wake and look
            self._mail = asyncio.Event()
            await self._observe_deliveries(deliveries)
        return len(done) + len(failed)

    async def _observe_deliveries(self, deliveries: Sequence[tuple[str, str]]) -> None:
        """Tell the observer the copies now in mailboxes, package by package, with how
        long since the origin node accepted each (its envelope says when)."""
        now = self._clock()
        copies: dict[str, int] = {}
        for _organ, message_id in deliveries:
            copies[message_id] = copies.get(message_id, 0) + 1
        for message_id, count in copies.items():
            try:
                record = envelope_record(await self.store.envelope(message_id))
                latency = since_origin(record, now)
            except (KeyError, ValueError, TransientFault):  # counted all the same
                latency = None
            self.observer.delivered(count, latency)

    async def _withdrawing(self, row: OutboxRow) -> bool:
        """Whether this mailbox row takes its document back: a revoke, or an update that
        removes this recipient."""
        if row.destination is not Destination.MAILBOX:
            return False
        if row.business == REVOKE:
            return True
        if row.business != UPDATE:
            return False
        record = envelope_record(await self.store.envelope(row.message_id))
        removed = (record.get("business") or {}).get("removed", [])
        return row.target in removed

    async def _withdraw(self, row: OutboxRow) -> list[Event]:
        """Take the document out of the recipient's mailbox where it is not fetched yet
        (or keep it from ever arriving), and say what happened, to both senders' nodes."""
        about, sender, organ = row.about or row.document_id or "", row.sender or "", row.target
        met = await self.store.withdraw(organ, about, sender, row.message_id, self._clock())
        events = []
        for found in met:
            if found.outcome == "withdrawn":
                reason = f"revoked by its sender (message {row.message_id}) before it was fetched"
                events.append(self._revoked(row, found.message_id, organ, reason, found.origin))
        outcome = (
            "; ".join(f"{f.message_id}: {f.outcome}" for f in met)
            or "not arrived yet: it will not be delivered"
        )
        events.append(
            replace(
                self._revoked(row, row.message_id, organ, None),
                detail={"outcome": outcome, "about": about},
            )
        )
        log.info("revoke", node=self.settings.node_id, organ=organ, about=about, outcome=outcome)
        return events

    def _revoked(
        self,
        row: OutboxRow,
        message_id: str,
        organ: str,
        reason: str | None,
        origin: str | None = None,
    ) -> Event:
        own = message_id == row.message_id
        return reporting.failed(
            message_id=message_id,
            document_id=row.about if not own else row.document_id,
            sender=row.sender,
            organ=organ,
            reason=reason or "",
            here=self.settings.node_id,
            at=self._clock(),
            origin=row.origin if own else origin,
            kind=EventKind.REVOKED,
        )

    async def _delivery_receipts(
        self, rows: Sequence[OutboxRow], deliveries: Sequence[tuple[str, str]]
    ) -> list[Event]:
        """One delivered event per package put in mailboxes in this batch, carrying the
        receipt this node signs for those recipients, for the origin node."""
        if not deliveries:
            return []
        row_of = {r.message_id: r for r in rows}
        recipients: dict[str, list[str]] = {}
        for organ, message_id in deliveries:
            recipients.setdefault(message_id, []).append(organ)
        now, me = self._clock(), self.settings.node_id
        issue = self._receipts
        signed: list[bytes | None] = [None] * len(recipients)
        if issue is not None:  # XML signatures: the batch's, in one trip off the event loop
            batch = [
                (row_of[m], organs, await self._pdf_of(row_of[m]))
                for m, organs in recipients.items()
            ]
            signed = list(
                await asyncio.to_thread(
                    lambda: [_signed(issue, r, o, now, pdf) for r, o, pdf in batch]
                )
            )
        return [
            reporting.delivered(
                message_id=message_id,
                document_id=row_of[message_id].document_id,
                sender=row_of[message_id].sender,
                digest=row_of[message_id].digest,
                recipients=organs,
                here=me,
                at=now,
                origin=row_of[message_id].origin,
                receipt=receipt,
            )
            for (message_id, organs), receipt in zip(recipients.items(), signed, strict=True)
        ]

    async def _pdf_of(self, row: OutboxRow) -> Sequence[Mapping[str, Any]]:
        """The PDF signatures the entry node found, for a package admitted below strict."""
        if row.level in (None, Level.STRICT.value):
            return ()
        found = envelope_record(await self.store.envelope(row.message_id)).get("pdf_signatures")
        return [p for p in found if isinstance(p, dict)] if isinstance(found, list) else ()

    async def _failed_behind(self, row: OutboxRow, reason: str) -> list[Event]:
        """A failed event, for the origin, per recipient the given-up link copy was for."""
        topology = self.settings.topology
        node, _ = split_target(row.target)
        try:
            recipients = envelope_recipients(await self.store.envelope(row.message_id))
        except (KeyError, ValueError):
            return []
        behind = [
            organ
            for organ in recipients
            if topology is None or topology.next_hop(self.settings.node_id, organ) == node
        ]
        now = self._clock()
        return [
            reporting.failed(
                message_id=row.message_id,
                document_id=row.document_id,
                sender=row.sender,
                organ=organ,
                reason=reason,
                here=self.settings.node_id,
                at=now,
                origin=row.origin,
            )
            for organ in behind
        ]

    async def _publish_on_link(self, row: OutboxRow) -> None:
        node, lane = split_target(row.target)
        headers: dict[str, str | int] = {}
        if self.directory_sync is not None:  # routed by this version: the next node needs it
            headers[VERSION_HEADER] = self.directory_sync.version
        body = frame(
            await self.store.envelope(row.message_id), await self.store.package_bytes(row.digest)
        )
        await self._publish_to(
            node, lane, Message(body, message_id=row.message_id, headers=headers)
        )

    # --- links ------------------------------------------------------------------------

    async def consume_parent_link(self, lane: str) -> None:
        """Consume this node's downward lane on the parent's broker; a link that is down
        is not an error: wait, and take up again when it returns."""
        backoff = Backoff(first=0.5, ceiling=30.0)
        parent = self.settings.parent
        assert parent is not None
        while True:
            try:
                await self.declare_parent_link()
                await self.consume_link(
                    self.parent_transport,
                    down_queue(parent, self.settings.node_id, lane),
                    lane,
                    from_parent=True,
                )
            except TransientFault as exc:
                log.info("link.down", parent=parent, error=exc.message)
                self.links.down(parent, PARENT, exc.message)
                await backoff.wait()

    async def consume_link(
        self, transport: Transport, queue: str, lane: str, *, from_parent: bool = False
    ) -> None:
        """Up to ``link_concurrency`` packages of one lane at once, each owned by this task
        group: the envelope check and commit of one overlap the fsyncs and broker round
        trips of the others. Some deliveries are taken alone, once those in flight are done:
        a directory or a batch of reports (each stays after the packages sent before it), a
        redelivered message (it may be the one that killed the process: a crash then counts
        against it only), and everything on the large lane (claims, whose bytes come over
        HTTP, one at a time)."""
        backoff = Backoff()
        width = 1 if lane == LARGE_LANE else max(1, self.settings.link_concurrency)
        slots = asyncio.Semaphore(width)

        async def take(delivery: Delivery) -> None:
            try:
                await self.handle_link(delivery, lane, from_parent=from_parent)
                backoff.reset()
            except TransientFault as fault:
                log.warning("link.transient", code=fault.code, error=fault.message)
                await _requeue(delivery)
                await backoff.wait()
            finally:
                slots.release()

        deliveries = transport.consume(queue, prefetch=self.settings.prefetch)
        lost: TransientFault | None = None  # the link itself failed: raised as it came
        try:
            async with asyncio.TaskGroup() as group:
                try:
                    async for delivery in deliveries:
                        kind = delivery.message.headers.get(KIND_HEADER)
                        if delivery.redelivered or kind in (DIRECTORY, reporting.REPORTS):
                            for _ in range(width):  # the others finish first
                                await slots.acquire()
                            for _ in range(width - 1):
                                slots.release()
                            await take(delivery)
                            continue
                        await slots.acquire()
                        group.create_task(take(delivery))
                except TransientFault as fault:
                    lost = fault  # those in flight finish (or fail to ack: redelivered)
        finally:  # only now, with the acks of those in flight done, is the channel closed
            await deliveries.aclose()
        if lost is not None:
            raise lost

    async def handle_link(self, delivery: Delivery, lane: str, *, from_parent: bool = False) -> str:
        """A package from a neighbouring node: check its envelope, add our hop, route it.
        Or, from the parent only, a newer signed directory."""
        if delivery.message.headers.get(KIND_HEADER) == DIRECTORY:
            return await self._take_directory(delivery, from_parent=from_parent)
        if delivery.message.headers.get(KIND_HEADER) == reporting.REPORTS:
            return await self._take_reports(delivery, lane)
        started = time.perf_counter()
        routed_by = delivery.message.headers.get(VERSION_HEADER)
        if (
            self.directory_sync is not None
            and isinstance(routed_by, int)
            and routed_by > self.directory_sync.version
        ):
            raise TransientFault(  # requeued with backoff until the directory comes down
                f"this package was routed by directory v{routed_by}; this node has "
                f"v{self.directory_sync.version} and waits for the newer one"
            )
        topology = self.settings.topology
        assert topology is not None
        me = self.settings.node_id
        claim = delivery.message.headers.get(CLAIM_HEADER)
        try:
            wire, data = unframe(delivery.message.body)
            envelope = self._open_link_envelope(wire, None if claim else data, topology)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:  # hostile, not signed
            fault = EnvelopeInvalid(f"the envelope does not parse: {type(exc).__name__}")
            return await self._dead_letter_link(delivery, lane, fault, started)
        except HopLimitExceeded as fault:  # signed, but going round: the sender is told
            await self._undeliverable(wire, fault)
            return await self._dead_letter_link(delivery, lane, fault, started)
        except EnvelopeInvalid as fault:  # nothing in it can be trusted, nor reported
            return await self._dead_letter_link(delivery, lane, fault, started)
        came_from = envelope.last_node
        if self.settings.verify_login and not from_parent:
            published_by = delivery.message.user_id
            logins = (came_from, f"link-{came_from}", self.settings.own_login)
            if published_by is None or published_by not in logins:
                mismatch = LinkLoginMismatch(
                    f"a package whose last hop is node {came_from} was published by "
                    f"{'login ' + published_by if published_by else 'no login'}: each child "
                    "publishes under its own login: its node id, or link-<node id> "
                    "([link] verify_login)"
                )
                return await self._dead_letter_link(delivery, lane, mismatch, started)
        self._heard(came_from, wire)
        # the same package again (a republish after a crash): for a claim, found before its
        # bytes are pulled again; inline, the commit finds it (one store round trip less)
        if claim and await self.store.find_digest(envelope.sha256) is not None:
            await delivery.ack()
            self._link_line(envelope, "duplicate", started, len(envelope.recipients))
            return "duplicate"
        recipients: tuple[str, ...] = envelope.recipients
        if envelope.kind == Kind.STATUS.value and not recipients:
            recipients = await self._status_targets_here(envelope)
        # a node on the way handed these to an upstream axis: nobody after it judges them
        recipients = tuple(r for r in recipients if r not in envelope.bridged)
        plan = topology.plan(me, recipients, came_from)
        handed = [o for node, organs in plan.links.items() if is_upstream(node) for o in organs]
        try:
            extended = append_hop(wire, self._key, when=self._clock(), bridged=handed)
        except HopLimitExceeded as fault:  # signed, but going round: the sender is told
            await self._undeliverable(wire, fault)
            return await self._dead_letter_link(delivery, lane, fault, started)
        package = package_from_envelope(envelope)
        bytes_in: bytes | Path = data
        if claim:  # a large package: its bytes come over HTTP, checked against the envelope
            try:
                bytes_in = await self._claimed_bytes(envelope, came_from)
            except TransientFault:
                raise  # requeued: the transfer resumes later
            except LienthongError as fault:  # it cannot complete: the sender is told why
                await self._undeliverable(wire, fault)
                return await self._dead_letter_link(delivery, lane, fault, started)
        now = self._clock()
        result = await self.store.commit_intake(
            Intake(
                message_id=envelope.message_id,
                package=package,
                data=bytes_in,
                source=f"link:{came_from}",
                envelope=extended,
                outbox=(outbox := outbox_for(plan, lane, me)),
                received_at=now,
                key=f"message:{envelope.message_id}",
                origin=envelope.origin,
                events=(evidence := self._link_events(envelope, plan.unknown, came_from, now)),
            )
        )
        self.reports.note(evidence)
        self._crash("link-after-commit")
        await delivery.ack()
        if result.outcome is Outcome.COMMITTED:
            observe_routes(self.observer, outbox)
        self._link_line(
            envelope,
            "received" if result.outcome is Outcome.COMMITTED else result.outcome.value,
            started,
            len(recipients),
            mailboxes=len(plan.mailboxes),
            links=sorted(plan.links),
            unknown=list(plan.unknown),
        )
        self._wake_relays()
        return result.outcome.value

    async def _claimed_bytes(self, envelope: Envelope, came_from: str) -> Path:
        """The bytes of a claim: pulled from the parent (a transfer this node opens), or
        found where a child pushed them before it sent the claim."""
        if self.blobs is None:
            raise PackageTooLarge(
                f"node {self.settings.node_id} has no transfers configured for large packages"
            )
        if came_from == self.settings.parent:
            return await self.blobs.pull(came_from, envelope.sha256, envelope.size)
        pushed = self.blobs.received(came_from, envelope.sha256, envelope.size)
        if pushed is None:  # taken over by an intake of it that did not commit, maybe
            with contextlib.suppress(KeyError):
                pushed = await self.store.package_file(envelope.sha256)
        if pushed is None:
            raise TransientFault(  # requeued: the push may still be finishing
                f"the bytes of {envelope.message_id} from {came_from} have not arrived"
            )
        return pushed

    def _heard(self, neighbour: str, wire: bytes) -> None:
        """How far the neighbour's clock is from ours, from the hop record it just signed."""
        hops = envelope_hops(wire)
        when = _parsed(hops[-1][1]) if hops else None
        if when is not None and hops[-1][0] == neighbour:
            role = PARENT if neighbour == self.settings.parent else CHILD
            self.links.heard(neighbour, role, when, self._clock())

    def _link_line(
        self, envelope: Envelope, outcome: str, started: float, recipients: int, **more: Any
    ) -> None:
        """The one ``package`` line of a package taken from a link."""
        log.info(
            "package",
            node=self.settings.node_id,
            source=f"link:{envelope.last_node}",
            message_id=envelope.message_id,
            document_id=envelope.document_id,
            sender=envelope.sender,
            recipients=recipients,
            outcome=outcome,
            code=None,
            verification=envelope.level,
            ms=round((time.perf_counter() - started) * 1000, 1),
            **more,
        )

    def _link_events(
        self, envelope: Envelope, unknown: Sequence[str], came_from: str, now: datetime
    ) -> tuple[Event, ...]:
        """The evidence of a package taken from a link: received here; a status it
        carries; the recipients judged unknown here, reported to the origin."""
        me = self.settings.node_id
        events = [reporting.received(envelope, me, now, came_from)]
        if envelope.kind == Kind.STATUS.value and envelope.status_code:
            events.append(
                reporting.status(
                    message_id=envelope.message_id,
                    document_id=envelope.document_id,
                    author=envelope.sender,
                    digest=envelope.sha256,
                    code=envelope.status_code,
                    sent_at=_parsed(envelope.status_at),
                    description=None,
                    here=me,
                    at=now,
                )
            )
        events += [
            reporting.failed(
                message_id=envelope.message_id,
                document_id=envelope.document_id,
                sender=envelope.sender,
                organ=organ,
                reason=f"unknown recipient: no node of this axis hosts {organ} (judged at {me})",
                here=me,
                at=now,
                origin=envelope.origin,
            )
            for organ in unknown
        ]
        return tuple(events)

    async def _take_reports(self, delivery: Delivery, lane: str) -> str:
        try:
            sender, added = await self.reports.take(delivery.message.body)
        except EnvelopeInvalid as fault:
            return await self._dead_letter_link(delivery, lane, fault)
        await delivery.ack()  # after they are recorded
        log.info("reports.taken", node=self.settings.node_id, came_from=sender, new=added)
        self._wake_relays()  # some may go on towards their node
        return "reports"

    async def _send_reports(self, neighbour: str, body: bytes) -> None:
        message = Message(body, headers={KIND_HEADER: reporting.REPORTS})
        await self._publish_to(neighbour, REPORT_LANE, message)

    async def _publish_to(self, node: str, lane: str, message: Message) -> None:
        timeout = self.settings.publish_timeout_s
        if node == self.settings.parent:  # through the parent's gate: all its login may write
            if self.settings.link_login is not None:  # RabbitMQ checks it against the login
                message = replace(message, user_id=self.settings.link_login)
            await self.parent_transport.publish(
                up_queue(node, lane), message, timeout=timeout, exchange=up_gate(node)
            )
        else:
            await self.transport.publish(
                down_queue(self.settings.node_id, node, lane), message, timeout=timeout
            )

    async def _undeliverable(self, wire: bytes, fault: LienthongError) -> None:
        """A failed event per recipient of a package this node will not pass on, for its
        origin node (its envelope's signatures held: only its hop count did not)."""
        record, me, now = envelope_record(wire), self.settings.node_id, self._clock()
        reason = f"undeliverable: {fault.message} (at node {me}; held for its operator)"
        events = [
            reporting.failed(
                message_id=str(record.get("message_id")),
                document_id=record.get("document_id"),
                sender=record.get("sender"),
                organ=str(organ),
                reason=reason,
                here=me,
                at=now,
                origin=str(record.get("origin")),
            )
            for organ in record.get("recipients", [])
        ]
        await self.store.record_events(events)
        self.reports.note(events)

    async def _dead_letter_link(
        self, delivery: Delivery, lane: str, fault: LienthongError, started: float | None = None
    ) -> str:
        """Keep a link message that does not check out, as it came, for an operator. A
        package (``started``: when link intake took it) is counted refused, in its one
        ``package`` line; nothing in it is trusted but the lane it came on."""
        dead_id, _ = await self.store.add_dead_letter(
            delivery.message.body, f"link:{lane}", f"{fault.code}: {fault.message}", 1
        )
        await delivery.ack()
        if started is None:  # a batch of reports
            log.warning("link.refused", code=fault.code, error=fault.message, dead_letter=dead_id)
            return "dead-lettered"
        seconds = time.perf_counter() - started
        self.observer.refused(fault.code, seconds)
        log.warning(
            "package",
            node=self.settings.node_id,
            source=f"link:{lane}",
            message_id=delivery.message.message_id,
            document_id=None,
            sender=None,
            recipients=None,
            outcome="dead-lettered",
            code=fault.code,
            error=fault.message,
            dead_letter=dead_id,
            ms=round(seconds * 1000, 1),
        )
        return "dead-lettered"

    def _open_link_envelope(self, wire: bytes, data: bytes | None, topology: Topology) -> Envelope:
        """The checked envelope, from this node's parent or a child. A signature by a key
        this node has not pinned may be a neighbour that just rotated its key: the pinned
        certificates are read again (at most every few seconds), and the envelope checked
        once more, before it is refused."""
        try:
            envelope = open_envelope(wire, data, self.peer_keys)
        except EnvelopeInvalid:
            if not self._reread_peer_keys():
                raise
            envelope = open_envelope(wire, data, self.peer_keys)
        came_from, me = envelope.last_node, self.settings.node_id
        if came_from != self.settings.parent and topology.parents.get(came_from) != me:
            raise EnvelopeInvalid(f"node {came_from} is neither this node's parent nor a child")
        return envelope

    def _reread_peer_keys(self) -> bool:
        """True when the node certificates were read again and something changed."""
        now = time.monotonic()
        if self.peer_keys_source is None or now - self._peer_keys_read < 3.0:
            return False
        self._peer_keys_read = now
        fresh = dict(self.peer_keys_source())
        if fresh == self.peer_keys:
            return False
        self.use_peer_keys(fresh)
        return True

    def use_peer_keys(self, keys: Mapping[str, PeerKey]) -> None:
        """Pin these node keys from now on (the same dict: everything that holds it sees
        them)."""
        self.peer_keys.clear()
        self.peer_keys.update(keys)
        log.info("trust.node_keys", node=self.settings.node_id, pinned=len(keys))

    def use_key(
        self,
        key: NodeKey,
        receipts: Callable[[OutboxRow, Sequence[str], datetime, Sequence[Mapping[str, Any]]], bytes]
        | None,
    ) -> None:
        """Sign with this key from now on (a rotation): hop records, envelopes, reports,
        checkpoints and, given, receipts. What was signed before stays verifiable by the
        old certificate, which peers keep pinned beside the new one."""
        self._key = key
        self.reports.use_key(key)
        if receipts is not None:
            self._receipts = receipts
        log.info("trust.node_key", node=self.settings.node_id, kid=key.kid)

    async def _take_directory(self, delivery: Delivery, *, from_parent: bool) -> str:
        if self.directory_sync is None or not from_parent:
            log.warning(
                "directory.refused",
                node=self.settings.node_id,
                error="a directory may only come down from the parent, to a node that keeps one",
            )
            await delivery.ack()
            return "directory.refused"
        outcome = await self.directory_sync.offer(
            delivery.message.body, came_from=self.settings.parent or "?"
        )
        await delivery.ack()  # after it is kept (or refused for good)
        return outcome

    def _directory_acceptable(self, signed: SignedDirectory) -> str | None:
        """What this node cannot follow without its operator: refused, not half applied."""
        me, directory = self.settings.node_id, signed.directory
        if me not in directory.nodes:
            return f"node {me} is not in it"
        if directory.nodes[me] != self.settings.parent:
            return (
                f"it moves node {me} under {directory.nodes[me]!r}, but this node's parent is "
                f"{self.settings.parent!r} (node file); change the node file and restart first"
            )
        if not directory.hosted_by(me):
            return f"no agency has home_node = {me!r}"
        return None

    async def _apply_directory(self, signed: SignedDirectory) -> None:
        """Put a newer directory to use: admission, then routing and hosted agencies."""
        assert self._directory is not None
        await self._directory.reload_admission()
        directory = signed.directory
        self._tree = directory.topology() if directory.nodes else None
        self.settings = replace(self.settings, hosted=directory.hosted_by(self.settings.node_id))
        self._route_upstreams()
        await self.declare()  # queues of new children

    # --- quarantine (lienthong quarantine) ---------------------------------------------

    async def decide_quarantined(
        self, message_id: str, decision: str, *, by: str, note: str | None = None
    ) -> HeldPackage:
        """An operator's decision on a held package: ``released`` routes it now, as if
        it had just been accepted; ``rejected`` fails it for each recipient, with the
        operator's word. Recorded once, with who and when, in the evidence log."""
        held = await self.store.held_package(message_id)
        if held is None or held.decision is not None:
            raise Quarantined(
                f"package {message_id} is not held here"
                + (f" (it was {held.decision} by {held.decided_by})" if held else "")
            )
        now, me = self._clock(), self.settings.node_id
        record = envelope_record(await self.store.envelope(message_id))
        recipients = [str(r) for r in record.get("recipients", [])]
        word = f"{decision} by {by}" + (f": {note}" if note else "")
        events = [
            Event(
                EventKind.QUARANTINE,
                f"quarantine|{message_id}",
                now,
                me,
                message_id=message_id,
                document_id=held.document_id,
                sender=held.sender,
                detail={
                    "quarantine": decision,
                    "by": by,
                    "note": note or "",
                    "level": "quarantined",
                },
            )
        ]
        outbox: tuple[OutboxItem, ...] = ()
        if decision == "released":
            topology = self.settings.topology
            arrived = held.source if held.source.startswith(UPSTREAM_PREFIX) else None
            if topology is not None:
                plan = topology.plan(me, recipients, arrived)
                large = is_large(int(record.get("size") or 0), self.settings.inline_max_bytes)
                outbox = outbox_for(plan, LARGE_LANE if large else "normal", me)
            else:
                outbox = tuple(
                    OutboxItem(Destination.MAILBOX, organ)
                    for organ in recipients
                    if organ in self.settings.hosted
                )
        else:
            events += [
                reporting.failed(
                    message_id=message_id,
                    document_id=held.document_id,
                    sender=held.sender,
                    organ=organ,
                    reason=f"held in quarantine and {word}",
                    here=me,
                    at=now,
                    origin=None,
                )
                for organ in recipients
            ]
        if not await self.store.decide_quarantined(
            message_id, decision, by=by, at=now, note=note, outbox=outbox, events=events
        ):
            raise Quarantined(f"package {message_id} was decided meanwhile")
        observe_routes(self.observer, outbox)  # released: routed now
        self.reports.note(events)
        self._wake_relays()
        log.info("quarantine.decided", message_id=message_id, decision=decision, by=by)
        decided = await self.store.held_package(message_id)
        assert decided is not None
        return decided

    # --- upstream axes (adapters/bridge.py) ---------------------------------------------

    def set_upstream_agencies(self, upstream: str, agencies: Sequence[UpstreamAgency]) -> None:
        """Route to the agencies an upstream's list names (those no node of ours hosts)."""
        self._upstream_agencies[upstream] = tuple(agencies)
        self._route_upstreams()

    def _handed_upstream(self, targets: Sequence[str]) -> list[str]:
        """The recipients this node hands to an upstream axis (its hop record says so)."""
        topology, me = self.settings.topology, self.settings.node_id
        if topology is None:
            return []
        return [
            organ
            for organ in targets
            if is_upstream(topology.next_hop(me, topology.current_code(organ)) or "")
        ]

    def _check_upstream_sender(self, upstream: str, sender: str) -> None:
        """An upstream may bring packages from its agencies, never from one of ours."""
        topology = self.settings.topology
        home = topology.homes.get(topology.current_code(sender)) if topology else None
        if home is not None and home != upstream:
            raise SubmitterNotSender(
                f"{upstream} may not bring a package from {sender}, which {home} hosts"
            )

    def _route_upstreams(self) -> None:
        settings = self.settings
        self.settings = replace(
            settings,
            topology=with_upstreams(
                self._tree,
                settings.node_id,
                settings.parent,
                settings.hosted,
                self._upstream_agencies,
            ),
        )

    async def _status_targets_here(self, envelope: Envelope) -> tuple[str, ...]:
        """A status whose entry node did not know its document: resolve it here."""
        document = await self.store.document(envelope.document_id or "")
        if document is None:
            return ()
        if envelope.status_code == RECALL_REQUEST:
            return document.recipients if envelope.sender == document.sender else ()
        return (document.sender,) if envelope.sender in document.recipients else ()

    async def relay_forever(self) -> None:
        while True:
            self._outbox_ready.clear()
            try:
                moved = await self.relay_once()
                await self.reports.relay_once()
                await self.push_once()
            except LienthongError as exc:
                log.warning("relay.retry", code=exc.code, error=exc.message)
                moved = 0
            if moved < self.settings.relay_batch:
                # asyncio.timeout, not wait_for: on 3.11, wait_for can swallow a cancel
                # that lands as the event is set, and the relay then never stops
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settings.relay_idle_s):
                        await self._outbox_ready.wait()

    # --- mailbox requests (fetch) ---------------------------------------------------------

    async def serve_requests(self) -> None:
        backoff = Backoff()
        async for delivery in self.transport.consume(self.queues.requests, prefetch=4):
            try:
                await self.handle_request(delivery)
                backoff.reset()
            except Unroutable:  # the requester has gone; its request goes with it
                await delivery.ack()
            except TransientFault as fault:
                log.warning("requests.transient", code=fault.code, error=fault.message)
                await _requeue(delivery)
                await backoff.wait()
            except (ValueError, TypeError, RecursionError) as exc:  # malformed: drop it, say why
                log.warning("requests.malformed", error=str(exc))
                await delivery.ack()

    async def handle_request(self, delivery: Delivery) -> None:
        message = delivery.message
        if len(message.body) > MAX_REQUEST_BYTES:  # a list of 1,000 ids is under 64 KiB
            raise ValueError(f"a request body is at most {MAX_REQUEST_BYTES} bytes")
        op = str(message.headers.get(OP_HEADER, ""))
        organ = str(message.headers.get(AS_HEADER, ""))
        reply = message.reply_to
        if not reply or not reply.startswith(REPLY_PREFIXES):
            log.warning("requests.reply_refused", reply_to=reply)
            await delivery.ack()  # answers go only to reply queues, never into node queues
            return
        correlation = message.correlation_id or message.message_id
        timeout = self.settings.publish_timeout_s
        credential = self.credential_of(message)
        allowed = not self.settings.credentials or (
            credential is not None and credential.may_act_for(organ)
        )
        if organ not in self.settings.hosted or not allowed:
            reason = f"{organ!r} has no mailbox on node {self.settings.node_id}"
            await self.transport.publish(
                reply,
                Message(
                    Answer(
                        "refused",
                        code="agency.not_hosted" if allowed else "agency.not_yours",
                        reason=reason
                        if allowed
                        else f"this caller may not read the mailbox of {organ!r}",
                    ).encode(),
                    correlation_id=correlation,
                    headers={"lienthong-last": 1, "lienthong-kind": "answer"},
                ),
                timeout=timeout,
            )
        elif op == "fetch":
            limit = min(max(int(message.headers.get("lienthong-limit", 100)), 1), 1000)
            # a large package does not ride AMQP: fetch it over the REST API (streamed)
            entries = await self.store.mailbox(
                organ, unfetched_only=True, limit=limit, max_size=self.settings.inline_max_bytes
            )
            for entry in entries:
                await self.transport.publish(
                    reply,
                    Message(
                        await self.store.package_bytes(entry.digest),
                        message_id=entry.message_id,
                        correlation_id=correlation,
                        headers={
                            "lienthong-kind": "package",
                            "lienthong-sender": entry.sender,
                            "lienthong-document-id": entry.document_id or "",
                            "lienthong-package-kind": entry.kind,
                            "lienthong-last": 0,
                        },
                    ),
                    timeout=timeout,
                )
            await self.transport.publish(
                reply,
                Message(
                    json.dumps({"count": len(entries)}).encode(),
                    correlation_id=correlation,
                    headers={"lienthong-kind": "end", "lienthong-last": 1},
                ),
                timeout=timeout,
            )
        elif op == "fetched":
            ids = [str(i) for i in json.loads(message.body or b"[]")][:1000]
            count = await self.acknowledge(organ, ids)
            await self.transport.publish(
                reply,
                Message(
                    json.dumps({"marked": count}).encode(),
                    correlation_id=correlation,
                    headers={"lienthong-kind": "end", "lienthong-last": 1},
                ),
                timeout=timeout,
            )
        elif op == "status":
            await self._answer_status(organ, message.body, reply, correlation)
        await delivery.ack()

    async def push_once(self) -> int:
        """Publish the mail of push agencies to their queues, with a confirm, then mark it
        pushed. The mailbox stays the source of truth: a crash between the two publishes it
        again (the agency's system sees the message id twice, and its ack is idempotent);
        it is fetched only when the agency acknowledges it."""
        pushed = 0
        for organ in sorted(self.settings.push & self.settings.hosted):
            entries = await self.store.unpushed(organ, self.settings.relay_batch)
            for entry in entries:
                if is_large(entry.size, self.settings.inline_max_bytes):
                    continue  # marked pushed all the same: it is fetched over the REST API
                await self.transport.publish(
                    self.queues.mailbox(organ),
                    Message(
                        await self.store.package_bytes(entry.digest),
                        message_id=entry.message_id,
                        headers={
                            "lienthong-kind": "package",
                            "lienthong-sender": entry.sender,
                            "lienthong-document-id": entry.document_id or "",
                            "lienthong-package-kind": entry.kind,
                            AS_HEADER: organ,
                        },
                    ),
                    timeout=self.settings.publish_timeout_s,
                )
            await self.store.mark_pushed(organ, [e.message_id for e in entries])
            pushed += len(entries)
        return pushed

    def mail_arrived(self) -> asyncio.Event:
        """An event set when mail next lands in any mailbox of this node."""
        return self._mail

    async def acknowledge(self, organ: str, message_ids: Sequence[str]) -> int:
        """The agency has these packages: mark them fetched, with the evidence, which
        goes back to each package's origin node. Returns how many were marked now."""
        events = await self._fetch_events(organ, message_ids)
        marked = await self.store.mark_fetched(organ, message_ids, events)
        self.reports.note(events)
        if marked:
            self.observer.fetched(marked)
        return marked

    async def _fetch_events(self, organ: str, message_ids: Sequence[str]) -> list[Event]:
        """The fetched event of each package (the store keeps those it marks now)."""
        events, now, me = [], self._clock(), self.settings.node_id
        for message_id in dict.fromkeys(message_ids):
            try:
                record = envelope_record(await self.store.envelope(message_id))
            except KeyError:
                continue
            events.append(
                reporting.fetched(
                    message_id=message_id,
                    document_id=record.get("document_id"),
                    sender=str(record.get("sender")),
                    digest=str(record.get("sha256")),
                    organ=organ,
                    here=me,
                    at=now,
                    origin=str(record.get("origin")),
                )
            )
        return events

    async def _answer_status(
        self, organ: str, body: bytes, reply: str, correlation: str | None
    ) -> None:
        """Where a document this agency sent stands, recipient by recipient."""
        request = json.loads(body or b"{}")
        ident = str(request.get("id", "")) if isinstance(request, dict) else ""
        if not ident:
            raise ValueError('a status request is {"id": DocumentId or message id}')
        view = await document_status(
            self.store,
            ident,
            here=self.settings.node_id,
            topology=self.settings.topology,
            now=self._clock(),
            deadlines=self.settings.deadlines,
        )
        if view is None or view.sender != organ:
            answer = Answer(
                "refused",
                code=NotTracked.code,
                reason=f"{organ} sent no document or package {ident!r} through node "
                f"{self.settings.node_id}",
            ).encode()
        else:
            answer = json.dumps(
                {"outcome": "status", **view.to_json()}, ensure_ascii=False
            ).encode()
        await self.transport.publish(
            reply,
            Message(
                answer,
                correlation_id=correlation,
                headers={"lienthong-kind": "end", "lienthong-last": 1},
            ),
            timeout=self.settings.publish_timeout_s,
        )

    # --- housekeeping -----------------------------------------------------------------

    async def housekeeping(self, every_s: float = 3600) -> None:
        while True:
            try:
                removed = await self.store.prune_dedup(
                    self._clock() - self.settings.dedup_retention
                )
                collected = await self.store.collect_garbage()
                if removed or collected:
                    log.info("housekeeping", dedup_pruned=removed, blobs_collected=collected)
            except TransientFault as exc:  # the store is away now; next time, then
                log.warning("housekeeping.skipped", error=exc.message)
            await asyncio.sleep(every_s)

    async def checkpoint_once(self) -> int | None:
        """Sign this instance's chain head and record it, for the parent (which keeps it,
        so that a rewrite of this log is found against it): the seq signed, or None when
        nothing was added since the last checkpoint."""
        chain = self.store.chain
        head = (await self.store.chain_heads()).get(chain)
        if head is None or head[0] <= self._checkpointed + 1:  # nothing new but our own
            return None
        last = await self.store.log_entries(chain=chain, after=head[0] - 1, limit=1)
        if last and last[0].event.kind is EventKind.CHECKPOINT:
            return None  # nothing new but another instance's checkpoint (a shared chain)
        now = self._clock()
        record = make_checkpoint(self._key, chain, head, now)
        event = replace(checkpoint_event(record, now, ""), report_to=self.settings.parent)
        await self.store.record_events([event])
        self.reports.note([event])
        self._checkpointed = head[0]
        return head[0]

    async def checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_every_s)
            try:
                signed = await self.checkpoint_once()
                if signed is not None:
                    log.info("evidence.checkpoint", node=self.settings.node_id, seq=signed)
            except TransientFault as exc:  # the store is away now; next time, then
                log.warning("evidence.checkpoint_skipped", error=exc.message)

    # --- operators --------------------------------------------------------------------

    async def replay_dead_letter(
        self, dead_letter_id: int, *, by: str | None = None, note: str | None = None
    ) -> str:
        """Send a dead letter through again; with ``by`` (an operator), in the evidence log."""
        letter = await self._open_dead_letter(dead_letter_id)
        try:
            target = await replay_dead_letter(
                self.store,
                self.transport,
                self.queues,
                dead_letter_id,
                timeout=self.settings.publish_timeout_s,
                user_id=self.settings.own_login,
            )
        except KeyError:
            raise NotDeadLettered(f"dead letter {dead_letter_id} is not here") from None
        if by is not None:
            await self.store.record_events(
                [self._operator_event("replay", by, f"dead-letter:{dead_letter_id}", note, letter)]
            )
        log.info("dead_letter.replayed", id=dead_letter_id, by=by, to=target)
        return target

    async def purge_dead_letter(self, dead_letter_id: int, *, by: str, note: str | None) -> int:
        """Give a dead letter up for good: a failed event for each recipient its bytes
        name (a failed receipt for the sender, at its origin node), and the operator's
        word, all in one transaction. Returns how many failed receipts were made."""
        letter = await self._open_dead_letter(dead_letter_id)
        data = await self.store.dead_letter_bytes(dead_letter_id)
        now, me = self._clock(), self.settings.node_id
        word = f"purged by operator {by}" + (f": {note}" if note else "")
        events = [
            reporting.failed(
                # never accepted (a submission's dead letter): known by its bytes' digest
                message_id=about.message_id or f"sha256:{letter.digest}",
                document_id=about.document_id,
                sender=about.sender,
                organ=organ,
                reason=f"dead-lettered at node {me} ({letter.reason}) and {word}",
                here=me,
                at=now,
                origin=about.origin if about.origin != me else None,
            )
            for about in [dead_letter_about(data, letter.source, me)]
            if about is not None
            for organ in about.recipients
        ]
        action = self._operator_event("purge", by, f"dead-letter:{dead_letter_id}", note, letter)
        if not await self.store.purge_dead_letter(dead_letter_id, now, [*events, action]):
            raise NotDeadLettered(f"dead letter {dead_letter_id} was replayed or purged meanwhile")
        self.reports.note(events)
        log.info("dead_letter.purged", id=dead_letter_id, by=by, failed=len(events))
        return len(events)

    async def _open_dead_letter(self, dead_letter_id: int) -> DeadLetter:
        letters = {d.id: d for d in await self.store.dead_letters(include_replayed=True)}
        letter = letters.get(dead_letter_id)
        if letter is None or letter.replayed_at is not None or letter.purged_at is not None:
            done = "" if letter is None else " (it was replayed or purged before)"
            raise NotDeadLettered(f"dead letter {dead_letter_id} is not open here{done}")
        return letter

    def _operator_event(
        self, action: str, by: str, target: str, note: str | None, letter: DeadLetter | None
    ) -> Event:
        return operator_event(
            self.settings.node_id, action, by, target, note, letter, self._clock()
        )

    async def start_drain(self, *, by: str, note: str | None = None) -> Drain:
        """Maintenance: stop taking new packages (from agencies and from upstream axes),
        finish those in flight, and keep carrying what is held. Not kept across a restart."""
        if self.drain is None:
            self.drain = Drain(self._clock(), by, note or "")
            self._intake_open.clear()
            await self.store.record_events([self._operator_event("drain", by, "on", note, None)])
            log.warning("node.draining", node=self.settings.node_id, by=by)
        return self.drain

    async def stop_drain(self, *, by: str, note: str | None = None) -> None:
        if self.drain is not None:
            self.drain = None
            self._intake_open.set()
            await self.store.record_events([self._operator_event("drain", by, "off", note, None)])
            log.warning("node.serving", node=self.settings.node_id, by=by)


def operator_event(
    node_id: str,
    action: str,
    by: str,
    target: str,
    note: str | None,
    letter: DeadLetter | None,
    at: datetime,
) -> Event:
    """The evidence of an operator's action: what, on what, by whom, why."""
    return Event(
        EventKind.OPERATOR,
        f"operator|{action}|{target}|{at.isoformat()}",
        at,
        node_id,
        digest=letter.digest if letter else None,
        detail={
            "action": action,
            "by": by,
            "target": target,
            "note": note or "",
            **({"reason": letter.reason, "source": letter.source} if letter else {}),
        },
    )


@dataclass(frozen=True)
class Drain:
    since: datetime
    by: str
    note: str


@dataclass(frozen=True)
class DeadLetterAbout:
    message_id: str | None
    document_id: str | None
    sender: str
    recipients: tuple[str, ...]
    origin: str


def dead_letter_about(data: bytes, source: str, here: str) -> DeadLetterAbout | None:
    """Who a dead letter's bytes say it was from and for; None when they say nothing
    that can be trusted (a link message whose envelope does not open, bytes not edXML)."""
    if source.startswith("link:"):
        try:
            wire, _ = unframe(data)
            record = envelope_record(wire)
        except (ValueError, TypeError, KeyError, LienthongError):
            return None
        return DeadLetterAbout(
            str(record.get("message_id") or "") or None,
            record.get("document_id"),
            str(record.get("sender") or ""),
            tuple(str(r) for r in record.get("recipients", [])),
            str(record.get("origin") or here),
        )
    try:
        block = message_block(parse(data).getroot())
    except (ValueError, LienthongError):
        return None
    sender = text(kid(block, "From"), "OrganId")
    if block is None or not sender:
        return None
    recipients = tuple(o for o in (text(to, "OrganId") for to in kids(block, "To")) if o)
    return DeadLetterAbout(None, text(block, "DocumentId"), sender, recipients, here)


# A round goes on past a full batch (so a slow or refusing link, tried once a round, costs
# its wait once per this many batches); a bounded round lets a link that came back be tried.
RELAY_BATCHES_PER_ROUND = 20
PUBLISH_AT_ONCE = 16  # link copies of one relay batch read, framed and published at once
MAX_REQUEST_BYTES = 64 * 1024  # a mailbox request's body: message ids, or a status query
REVOKE, UPDATE = int(BusinessType.REVOKE), int(BusinessType.UPDATE)
REPORT_LANE = "urgent"  # reports are small, and a sender waits on them: never behind bulk


def _signed(
    issue: IssueReceipt,
    row: OutboxRow,
    organs: Sequence[str],
    at: datetime,
    pdf: Sequence[Mapping[str, Any]] = (),
) -> bytes | None:
    """The receipt, or None (delivered all the same) when the package's values cannot go in
    one: a receipt refused must not hold up a mailbox."""
    try:
        return issue(row, organs, at, pdf)
    except (ValueError, TypeError, LienthongError) as exc:
        log.warning("receipt.not_issued", message_id=row.message_id, error=str(exc))
        return None


def _held_reason(package: Package) -> str | None:
    """Why a quarantined package is held (None: it is not)."""
    if package.level is not Level.QUARANTINED:
        return None
    return "; ".join(package.notes) or "its signature could not be verified"


def _parsed(at: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(at) if at else None
    except ValueError:
        return None


def _expired(row: OutboxRow, expiry: timedelta) -> str:
    since = row.created_at.isoformat() if row.created_at else "?"
    return f"expired: waited for link {row.target} since {since}, longer than {expiry}"


class _InProcess:
    """The delivery of a submission taken in this process, not from a queue."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.redelivered = False

    async def ack(self) -> None:
        return None

    async def reject(self, *, requeue: bool) -> None:
        return None


class Backoff:
    """Waits that double from 0.1 s up to ``ceiling`` while a dependency stays away."""

    def __init__(self, first: float = 0.1, ceiling: float = 5.0) -> None:
        self.first, self.ceiling, self.next = first, ceiling, first

    def reset(self) -> None:
        self.next = self.first

    async def wait(self) -> None:
        await asyncio.sleep(self.next)
        self.next = min(self.next * 2, self.ceiling)


async def _requeue(delivery: Delivery) -> None:
    """Give a delivery back; when even that fails, the broker redelivers it anyway."""
    try:
        await delivery.reject(requeue=True)
    except TransientFault as exc:
        log.info("delivery.requeue_failed", error=exc.message)


async def replay_dead_letter(
    store: Store,
    transport: Transport,
    queues: Queues,
    dead_letter_id: int,
    *,
    timeout: float,
    user_id: str | None = None,
) -> str:
    """Send a dead letter through again, as it came: a submission to intake, from the
    same source; a link message to this node's own link intake (the up lane of its lane,
    where its envelope is checked again and says which neighbour it came from)."""
    letters = {d.id: d for d in await store.dead_letters(include_replayed=True)}
    letter = letters.get(dead_letter_id)
    if letter is None:
        raise KeyError(dead_letter_id)
    data = await store.dead_letter_bytes(dead_letter_id)
    await store.clear_attempts(letter.digest)
    # marked first: intake holds back bytes with an unreplayed dead letter, and may see the
    # replayed message before this function returns
    await store.mark_replayed(dead_letter_id)
    via_link = letter.source.startswith("link:")
    target = (
        up_queue(queues.node_id, letter.source.partition(":")[2] or "normal")
        if via_link
        else queues.inbound
    )
    try:
        await transport.publish(
            target,
            Message(
                data,
                headers={} if via_link else {SOURCE_HEADER: letter.source},
                user_id=user_id,  # the replaying login: RabbitMQ checks it
            ),
            timeout=timeout,
        )
    except LienthongError:
        await store.mark_replayed(dead_letter_id, replayed=False)
        raise
    return target
