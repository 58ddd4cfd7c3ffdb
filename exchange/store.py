"""The store port: what a node keeps, and the one transaction that makes intake durable.

Two backends implement it (adapters/store_sqlite.py, adapters/store_postgres.py) and one
contract suite (tests/contract/test_store_contract.py) runs against both. The store is
the one source of truth for packages, the dedup index, the outbox, mailboxes, attempts
and dead letters (DESIGN §6).
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from exchange.errors import ConfigurationError
from exchange.evidence import Event, LogEntry
from exchange.model import BusinessType, Kind, Package


class Destination(enum.StrEnum):
    MAILBOX = "mailbox"  # an agency hosted on this node
    LINK = "link"  # a lane of a link to another node


def dedup_key(package: Package) -> str:
    """DESIGN §4: a new document is keyed by (sender, DocumentId); everything else by digest."""
    if (
        package.kind is Kind.EDOC
        and package.document_id
        and (package.business is None or package.business.type is BusinessType.NEW)
    ):
        return f"doc:{package.sender.organ_id}|{package.document_id}"
    return f"sha256:{package.digest}"


@dataclass(frozen=True)
class OutboxItem:
    destination: Destination
    target: str  # an OrganId for a mailbox; "<link>/<lane>" for a link
    failure: str | None = None  # written given up, with this reason (an unknown recipient)


@dataclass(frozen=True)
class Intake:
    """Everything one intake transaction writes."""

    message_id: str
    package: Package
    # the bytes, or the file they were spooled to and checked in (a large package: the
    # store takes the file over, never reading it whole; see Store.spool_folder)
    data: bytes | Path
    source: str  # the credential, link or upstream that submitted it
    envelope: bytes  # the signed transport envelope (exchange/envelope.py)
    outbox: tuple[OutboxItem, ...]
    received_at: datetime
    key: str | None = None  # the dedup key; by default derived from the package (DESIGN §4)
    origin: str | None = None  # the entry node (None: this one)
    events: tuple[Event, ...] = ()  # evidence written with it, when it is committed
    held: str | None = None  # quarantined: held for an operator with this reason, no outbox

    @property
    def dedup_key(self) -> str:
        return self.key or dedup_key(self.package)


class Outcome(enum.StrEnum):
    COMMITTED = "committed"  # new: written now
    DUPLICATE = "duplicate"  # same key, same bytes: the original answer
    CONFLICT = "conflict"  # same key, other bytes: refused, naming the original
    TAKEN = "taken"  # a new document whose DocumentId another sender's document carries


def business_of(package: Package) -> tuple[int, str | None]:
    """(BussinessDocType, the DocumentId it is about) as the store keeps them."""
    business = package.business
    if business is None or business.type is BusinessType.NEW:
        return 0, None
    return int(business.type), business.document_id or package.document_id


def owns_document_id(intake: Intake) -> bool:
    """Whether committing ``intake`` must first check that its DocumentId is not another
    sender's: a new document entering here (not one arriving over a link)."""
    return intake.key is None and intake.dedup_key.startswith("doc:")


@dataclass(frozen=True)
class IntakeResult:
    outcome: Outcome
    message_id: str  # ours when committed; the original otherwise
    level: str
    sender: str | None = None  # the original's From/OrganId (fast dedup hit, or TAKEN)


@dataclass(frozen=True)
class Attempt:
    """What the store knows of some bytes as their intake starts."""

    known: IntakeResult | None = None  # committed before: the dedup answer
    held: int | None = None  # held as this (unreplayed) dead letter
    count: int = 0  # attempts counted, this one included; 0 when known or held


@dataclass(frozen=True)
class KnownDocument:
    """What the DocumentId index says about a document this node carried."""

    message_id: str
    sender: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    message_id: str
    digest: str
    destination: Destination
    target: str
    created_at: datetime | None = None  # when the intake wrote it: expiry is judged from it
    origin: str | None = None  # the entry node of the package (None: this one)
    sender: str | None = None
    document_id: str | None = None
    level: str | None = None
    kind: str | None = None
    business: int = 0  # edXML BussinessDocType: 1 revoke and 2 update act on mailboxes
    about: str | None = None  # the DocumentId a revoke or update is about
    revoked: bool = False  # a mailbox row whose document was revoked for that agency first


@dataclass(frozen=True)
class FailedRow:
    """An outbox row given up, with the reason (expired, for a link down too long)."""

    id: int
    message_id: str
    target: str
    failure: str
    failed_at: datetime


@dataclass(frozen=True)
class MailboxEntry:
    organ_id: str
    message_id: str
    digest: str
    kind: str
    sender: str
    document_id: str | None
    delivered_at: datetime
    fetched_at: datetime | None
    size: int = 0  # bytes: above the inline cap, fetched over HTTP only


@dataclass(frozen=True)
class TrailStep:
    """Where one copy of a package stands at this node: a mailbox, or a link."""

    destination: Destination
    target: str  # the agency, or "<node>/<lane>"
    state: str  # waiting | forwarded | delivered | fetched | failed
    at: datetime  # since when (waiting) or when
    reason: str | None = None  # why it failed


@dataclass(frozen=True)
class Trail:
    """A package as this node knows it: the local view an operator or auditor reads."""

    message_id: str
    sender: str
    document_id: str | None
    kind: str
    level: str
    source: str  # who submitted it here: a credential's source, or link:<node>
    received_at: datetime
    steps: tuple[TrailStep, ...]


def trail_state(
    destination: Destination,
    created_at: datetime,
    done_at: datetime | None,
    failure: str | None,
    delivered_at: datetime | None,
    fetched_at: datetime | None,
) -> tuple[str, datetime, str | None]:
    """The state of one copy, from its outbox row and (for a mailbox) its mailbox row."""
    if failure is not None:
        return "failed", done_at or created_at, failure
    if destination is Destination.MAILBOX and fetched_at is not None:
        return "fetched", fetched_at, None
    if destination is Destination.MAILBOX and delivered_at is not None:
        return "delivered", delivered_at, None
    if destination is Destination.LINK and done_at is not None:
        return "forwarded", done_at, None
    return "waiting", created_at, None


@dataclass(frozen=True)
class Withdrawal:
    """What a revoke found of its document in one agency's mailbox."""

    message_id: str  # the package of the document it met
    outcome: str  # "withdrawn" (not fetched yet) | "already fetched"
    origin: str | None  # the node that package entered at (None: this one)


@dataclass(frozen=True)
class HeldPackage:
    """A quarantined package: committed and kept, routed only once an operator releases it."""

    message_id: str
    sender: str
    document_id: str | None
    kind: str
    source: str
    reason: str
    held_at: datetime
    decision: str | None = None  # "released" | "rejected", once decided
    decided_by: str | None = None
    decided_at: datetime | None = None
    note: str | None = None  # what the operator said


@dataclass(frozen=True)
class UpstreamLink:
    """One package's id at an upstream axis: its transport ``docId`` there."""

    upstream: str
    direction: str  # "in": fetched from it; "out": handed to it
    doc_id: str
    message_id: str
    at: datetime


@dataclass(frozen=True)
class DeadLetter:
    id: int
    digest: str
    source: str
    reason: str
    attempts: int
    dead_at: datetime
    replayed_at: datetime | None
    purged_at: datetime | None = None


@dataclass(frozen=True)
class Backlog:
    target: str  # an outbox target: "<node>/<lane>" or "upstream:<name>"
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class PendingMail:
    organ: str
    count: int
    oldest: datetime | None


@dataclass(frozen=True)
class Operations:
    """The counts behind ``GET /status``, read in one go."""

    backlog: Sequence[Backlog]  # copies waiting for a link or an upstream
    mail: Sequence[PendingMail]  # unfetched mail per agency, most first
    events: Mapping[str, int]  # evidence events recorded since ``since``, by kind
    per_minute: Sequence[tuple[datetime, str, int]]  # (minute, kind, count) since ``since``
    dead_letters: int
    quarantined: int


def check_schema(found: int, known: int, store: str) -> None:
    """Migrations only run forward: a store whose schema is newer than this code (a newer
    release ran on it, then this one was started again) is refused before anything reads
    or writes it, for rows this code does not understand could be lost or misread."""
    if found > known:
        raise ConfigurationError(
            f"{store} is at schema version {found}, newer than this lienthong "
            f"knows (version {known}): run the newer lienthong, or restore the backup "
            "taken before the upgrade"
        )


class Store(Protocol):
    chain: str  # this instance's evidence chain

    async def migrate(self) -> int:
        """Bring the schema to the current version; returns it. A schema newer than this
        code is refused (``check_schema``)."""

    async def close(self) -> None: ...

    async def find_digest(self, digest: str) -> IntakeResult | None:
        """The fast dedup look-up: was exactly these bytes committed before?"""

    async def begin_attempt(self, digest: str) -> Attempt:
        """One round trip as an intake starts: the fast dedup look-up, then the dead-letter
        check, and when neither knows the bytes, one more counted attempt."""

    async def record_attempt(self, digest: str, reason: str | None = None, delta: int = 1) -> int:
        """Count one more processing attempt of these bytes (before the heavy work);
        ``delta`` -1 takes back one that failed for a reason that was not the package's."""

    async def attempt_error(self, digest: str) -> str | None:
        """The last error recorded against these bytes, for the dead letter's reason."""

    async def dead_letter_for(self, digest: str) -> int | None:
        """The unreplayed dead letter holding these bytes, if any."""

    async def clear_attempts(self, digest: str) -> None: ...

    async def commit_intake(self, intake: Intake) -> IntakeResult:
        """One transaction: bytes, dedup key, package row, outbox rows, and the end of the
        package's attempt count; or the dedup answer; or TAKEN, naming the first document
        with its DocumentId, when a new document's id is another sender's (checked in the
        same transaction, so two senders racing with one DocumentId cannot both win)."""

    async def document(self, document_id: str) -> KnownDocument | None:
        """The DocumentId index: the first document with that id this node carried (a
        later package reusing the id cannot redirect the statuses of the first)."""

    async def pending_outbox(
        self,
        limit: int,
        *,
        skip_targets: Collection[str] = (),
        only_prefix: str | None = None,
        skip_prefix: str | None = None,
    ) -> Sequence[OutboxRow]:
        """The oldest rows not yet done, none of them for ``skip_targets`` (the links
        that refused a publish this round); only those whose target starts with
        ``only_prefix`` (an upstream's lanes), none whose target starts with
        ``skip_prefix`` (the relay leaves upstreams to their bridge).

        A store shared by several service instances (PostgreSQL) hands each row to one
        of them at a time: the rows returned are leased to this store object, the rows
        another holds are left out, and an instance gone leaves its rows to the others
        (docs/operations.md, "Two instances of one node")."""

    async def mark_outbox_done(self, ids: Sequence[int]) -> None: ...

    async def deliver(self, organ_id: str, message_id: str) -> bool:
        """Put a package in a mailbox; False when it was already there (exactly once)."""

    async def finish_outbox(
        self,
        deliveries: Sequence[tuple[str, str]],
        done: Sequence[int],
        failed: Sequence[tuple[int, str]] = (),
        events: Sequence[Event] = (),
    ) -> None:
        """One transaction: put (agency, message id) pairs in their mailboxes, at most once
        each, mark those outbox rows done, and the ``failed`` ones done with their reason,
        and append ``events`` (the receipts of those deliveries, the failures)."""

    async def failed_outbox(self, limit: int = 100) -> Sequence[FailedRow]:
        """Outbox rows given up, newest first."""

    async def mailbox(
        self,
        organ_id: str,
        *,
        unfetched_only: bool,
        limit: int,
        offset: int = 0,
        max_size: int | None = None,
    ) -> Sequence[MailboxEntry]:
        """The agency's mail, oldest first, a page of ``limit`` after ``offset``; with
        ``max_size``, none larger (the mail that AMQP may carry)."""

    async def mailbox_entry(self, organ_id: str, message_id: str) -> MailboxEntry | None:
        """One package in the agency's mailbox (not withdrawn); None if it is not there."""

    async def unpushed(self, organ_id: str, limit: int) -> Sequence[MailboxEntry]:
        """Mail of a push agency not yet published to its queue, oldest first (leased
        to one instance at a time, as ``pending_outbox`` does)."""

    async def mark_pushed(self, organ_id: str, message_ids: Sequence[str]) -> None: ...

    async def mark_fetched(
        self, organ_id: str, message_ids: Sequence[str], events: Sequence[Event] = ()
    ) -> int:
        """Mark packages fetched by the agency; the event of each one marked now (matched
        by message id) is appended in the same transaction."""

    async def withdraw(
        self, organ_id: str, document_id: str, sender: str, by_message_id: str, at: datetime
    ) -> Sequence[Withdrawal]:
        """One transaction: take every package of the document from ``sender`` (but not
        revokes, nor ``by_message_id``) out of the agency's mailbox where it is not fetched
        yet, and leave a tombstone, so that a copy still on its way is never delivered.
        Done again, it finds the same packages withdrawn (it is idempotent)."""

    # --- evidence (exchange/evidence.py) ---------------------------------------------

    async def record_events(self, events: Sequence[Event]) -> int:
        """Append the events not recorded before (by key); returns how many were new."""

    async def pending_reports(
        self, limit: int, *, skip_to: Collection[str] = ()
    ) -> Sequence[tuple[int, Event]]:
        """Events still to be reported to another node (``report_to``), oldest first,
        none of them bound for ``skip_to``: those of this instance's chain (SQLite), or,
        in a store shared by several instances, of any chain, each leased to one
        instance at a time as ``pending_outbox`` does."""

    async def mark_reported(self, ids: Sequence[int]) -> None: ...

    async def events_about(
        self, *, message_id: str | None = None, document_id: str | None = None
    ) -> Sequence[Event]:
        """Every event recorded about a package or a document, in the order recorded."""

    async def log_entries(
        self,
        *,
        chain: str | None = None,
        after: int = 0,
        limit: int = 1000,
        party: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Sequence[LogEntry]:
        """Entries of the log in chain order: one chain's run after ``after``, or a search
        by party (sender or recipient) and time."""

    async def chain_heads(self) -> Mapping[str, tuple[int, str]]:
        """Each chain's last entry (seq, hash)."""

    async def package_bytes(self, digest: str) -> bytes: ...

    def spool_folder(self) -> Path | None:
        """Where large packages are spooled on their way in, on the file system of the
        store's own files, so that taking one over is a rename; None where this store keeps
        bytes in its database and so takes no package above the inline cap."""

    async def package_file(self, digest: str) -> Path | None:
        """The file holding a package's bytes, where this store keeps them as files (so
        they can be streamed out, and in ranges); None where it does not."""

    async def trail(self, message_id: str) -> Trail | None:
        """Where each copy of a package stands at this node (None: not here)."""

    async def envelope(self, message_id: str) -> bytes: ...

    async def add_dead_letter(
        self, data: bytes, source: str, reason: str, attempts: int
    ) -> tuple[int, bool]:
        """Keep the bytes for an operator; (its id, False) when they are held already."""

    async def dead_letters(self, *, include_replayed: bool = False) -> Sequence[DeadLetter]: ...

    async def dead_letter_bytes(self, dead_letter_id: int) -> bytes: ...

    async def purge_dead_letter(
        self, dead_letter_id: int, at: datetime, events: Sequence[Event]
    ) -> bool:
        """Give an open dead letter up, with its evidence, in one transaction; False when
        it is not open (replayed or purged before)."""

    async def operations(self, since: datetime) -> Operations:
        """What an operator sees at a glance (exchange/store.py Operations)."""

    async def disk_full(self) -> str | None:
        """Why the store's writes fail for want of space (``store.disk_full``), and since
        when; None while they succeed. Its reads may go on working meanwhile."""

    async def latest_from(self, organs: Collection[str]) -> Mapping[str, str]:
        """The digest of the last package each of these agencies sent through here."""

    async def events_of_kind(self, kind: str, since: datetime, limit: int = 500) -> Sequence[Event]:
        """The most recent events of one kind since a time, newest first."""

    async def mark_replayed(self, dead_letter_id: int, replayed: bool = True) -> None:
        """Mark (or, with False, unmark) a dead letter as sent through intake again."""

    async def claim_key(self, caller: str, key: str, digest: str, at: datetime) -> str | None:
        """Bind a caller's idempotency key to the digest of what it submitted; the digest
        it was bound to before (None when the key is new)."""

    async def quarantined(self, *, decided: bool = False) -> Sequence[HeldPackage]:
        """Packages held for an operator, oldest first; with ``decided``, those decided too."""

    async def held_package(self, message_id: str) -> HeldPackage | None: ...

    async def decide_quarantined(
        self,
        message_id: str,
        decision: str,
        *,
        by: str,
        at: datetime,
        note: str | None = None,
        outbox: Sequence[OutboxItem] = (),
        events: Sequence[Event] = (),
    ) -> bool:
        """One transaction: record the decision on a package still held, write the
        ``outbox`` rows that now route it (a release) and the evidence. False, writing
        nothing, when it is not held (never was, or decided before)."""

    async def link_upstream(
        self, upstream: str, direction: str, doc_id: str, message_id: str, at: datetime
    ) -> str:
        """Record a package's ``docId`` at an upstream; the message id recorded for that
        (upstream, direction, docId) first, which stands."""

    async def upstream_message(self, upstream: str, direction: str, doc_id: str) -> str | None:
        """The message id an upstream's ``docId`` stands for here, if recorded."""

    async def upstream_links(self, message_id: str) -> Sequence[UpstreamLink]:
        """Every upstream id one package has, oldest first."""

    async def prune_dedup(self, older_than: datetime) -> int:
        """Forget dedup keys older than the retention; returns how many."""

    async def collect_garbage(self, grace_seconds: float = 3600) -> int:
        """Remove stored bytes no row names (an intake that died between its blob and its
        row), older than ``grace_seconds``; returns how many."""
