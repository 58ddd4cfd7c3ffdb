"""The embedded store: SQLite (WAL, synchronous=FULL) plus a content-addressed blob folder.

Package bytes live in ``blobs/<ab>/<cd>/<sha256>``; a blob is written to a temporary
file, fsynced, renamed into place and its folder fsynced before any row names it, so a
row never points at bytes that a crash could lose. Blobs no row names any more (an
intake that died between the blob and its row) are collected by ``collect_garbage``.

A full disk (ENOSPC at a blob file, SQLite's "database or disk is full") is
``store.disk_full``, a transient fault: nothing was committed, and ``disk_full`` says so
to the operator's view until a write to that part of the store succeeds again. The disk is
``adapters.durable.Disk``: the seam where a test fills it (adapters/faults.py).

All SQL runs on one connection in one worker thread, so the event loop never blocks on
the disk. Several processes may share the file: writers take the lock with
``BEGIN IMMEDIATE`` and wait for each other up to ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from adapters import bridge_sqlite, evidence_sqlite, ops_sqlite
from adapters.durable import PLAIN, Disk, disk_full, fsync_folder, write_atomically
from exchange.errors import StoreFull, TransientFault
from exchange.evidence import Event, LogEntry
from exchange.store import (
    Attempt,
    DeadLetter,
    Destination,
    FailedRow,
    HeldPackage,
    Intake,
    IntakeResult,
    KnownDocument,
    MailboxEntry,
    Operations,
    OutboxItem,
    OutboxRow,
    Outcome,
    Trail,
    TrailStep,
    UpstreamLink,
    Withdrawal,
    business_of,
    check_schema,
    owns_document_id,
    trail_state,
)

T = TypeVar("T")

# each step is SQL, or a function of the connection and the blob folder
Migration = str | Callable[[sqlite3.Connection, "BlobFolder"], object]

MIGRATIONS: list[Migration] = [
    # version 1
    """
    CREATE TABLE packages (
        message_id  TEXT PRIMARY KEY,
        digest      TEXT NOT NULL UNIQUE,
        size        INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        sender      TEXT NOT NULL,
        document_id TEXT,
        level       TEXT NOT NULL,
        source      TEXT NOT NULL,
        received_at TEXT NOT NULL,
        envelope    BLOB NOT NULL
    );
    CREATE TABLE dedup (
        key        TEXT PRIMARY KEY,
        digest     TEXT NOT NULL,
        message_id TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX dedup_created ON dedup (created_at);
    CREATE TABLE outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id  TEXT NOT NULL REFERENCES packages (message_id),
        destination TEXT NOT NULL,
        target      TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        done_at     TEXT,
        UNIQUE (message_id, destination, target)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;
    CREATE TABLE mailbox (
        organ_id     TEXT NOT NULL,
        message_id   TEXT NOT NULL REFERENCES packages (message_id),
        delivered_at TEXT NOT NULL,
        fetched_at   TEXT,
        PRIMARY KEY (organ_id, message_id)
    );
    CREATE TABLE attempts (
        digest     TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        last_error TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        digest      TEXT NOT NULL,
        source      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        dead_at     TEXT NOT NULL,
        replayed_at TEXT
    );
    """,
    # version 2: the DocumentId index that routes statuses
    """
    ALTER TABLE packages ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX packages_document ON packages (document_id, kind);
    """,
    # version 3: blob files one folder deep (ab/<digest>) instead of two (ab/cd/<digest>)
    lambda db, blobs: blobs.adopt_first_layout(),
    # version 4: an outbox row given up (expired) keeps its reason
    """
    ALTER TABLE outbox ADD COLUMN failure TEXT;
    CREATE INDEX outbox_failed ON outbox (done_at) WHERE failure IS NOT NULL;
    """,
    # version 5: the evidence log, each package's origin node, withdrawn mail, tombstones
    evidence_sqlite.MIGRATION,
    # version 6: idempotency keys of HTTP submissions
    """
    CREATE TABLE idempotency (
        caller     TEXT NOT NULL,
        key        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (caller, key)
    );
    CREATE INDEX idempotency_created ON idempotency (created_at)
    """,
    # version 7: mail pushed to an agency's AMQP queue
    "ALTER TABLE mailbox ADD COLUMN pushed_at TEXT",
    # version 8: quarantined packages, and packages' ids at upstream axes
    bridge_sqlite.MIGRATION,
    # version 9: purged dead letters; the indexes behind GET /status
    ops_sqlite.MIGRATION,
]


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


_NO_CAP = 2**62  # a mailbox query's size cap when none is asked for


class BlobFolder:
    """Content-addressed files, durable before anyone refers to them."""

    def __init__(self, root: Path, disk: Disk = PLAIN) -> None:
        self.root = root
        self.disk = disk
        self._folders: set[Path] = set()  # made already: folders are never removed

    def path(self, digest: str) -> Path:
        # 256 folders, made once: a folder per file (the first layout, two levels deep)
        # made the file system allocate a new directory inode for most intakes
        return self.root / digest[:2] / digest

    def put(self, digest: str, data: bytes) -> bool:
        """Keep ``data`` as the blob of ``digest``; True when bytes were written (False:
        they were there already)."""
        target = self.path(digest)
        with contextlib.suppress(FileNotFoundError):  # new, or collected just now: write it
            os.utime(target)  # young again: the collector leaves it to the intake now using it
            return False
        if target.parent not in self._folders:
            self._make_folder(target.parent)
        write_atomically(target, data, self.disk)  # two intakes of the same bytes may write at once
        return True

    def _make_folder(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # the folder's own entry, durable too; once per folder and process (256 in all),
        # also for one another writer or a killed process made and may not have fsynced
        fsync_folder(folder.parent)
        self._folders.add(folder)

    def adopt_first_layout(self) -> int:
        """Move files of the first layout (ab/cd/<digest>) to this one (ab/<digest>);
        idempotent, so a crash half way is finished by the next start. Returns how many."""
        moved = 0
        for old in sorted(self.root.glob("*/*/*")):
            if not old.is_file() or old.name.startswith("."):
                continue
            target = self.path(old.name)
            self._make_folder(target.parent)
            old.replace(target)
            fsync_folder(target.parent)
            moved += 1
        for inner in sorted(self.root.glob("*/*")):
            if inner.is_dir():
                for leftover in inner.iterdir():  # temporary files of a write that died
                    leftover.unlink()
                inner.rmdir()
                fsync_folder(inner.parent)
        return moved

    def adopt(self, digest: str, spooled: Path) -> bool:
        """Take over a spooled file (checked to hold ``digest``) as the blob: a rename on
        one file system, durable before anyone refers to it. True when it was taken
        (False: the same bytes were there already)."""
        target = self.path(digest)
        if target.exists():  # the same bytes stored before (or this very file, adopted once)
            os.utime(target)
            if spooled.resolve() != target.resolve():
                spooled.unlink(missing_ok=True)
            return False
        if target.parent not in self._folders:
            self._make_folder(target.parent)
        with open(spooled, "rb+") as handle:
            os.fsync(handle.fileno())
        spooled.replace(target)
        fsync_folder(target.parent)
        return True

    def get(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise KeyError(digest) from None

    def all_digests(self) -> list[tuple[str, float]]:
        return [
            (p.name, p.stat().st_mtime)
            for p in self.root.glob("*/*")
            if p.is_file() and not p.name.startswith(".")
        ]

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)


class SqliteStore:
    def __init__(
        self,
        folder: Path,
        *,
        busy_timeout_ms: int = 10_000,
        chain: str = "main",
        disk: Disk = PLAIN,
    ) -> None:
        self.folder = folder
        self.chain = chain  # this instance's evidence chain
        folder.mkdir(parents=True, exist_ok=True)
        self.disk = disk
        self.blobs = BlobFolder(folder / "blobs", disk)
        # the parts of the store ("blobs", "database") whose last write found the disk
        # full: since when, and what the disk said; a write that succeeds clears its part
        self._full: dict[str, tuple[datetime, str]] = {}
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        # Blob files are written and fsynced beside the database thread, several at once:
        # on one thread their fsyncs were half the time the store took per package.
        self._blob_io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blobs")
        self._db: sqlite3.Connection | None = None
        # What an operator reads (counts over the mailbox and the last hour's evidence, a
        # minute's point for the charts) goes to a read-only connection on a thread of its
        # own: a scan that grows with the store must never hold up the writes of intake,
        # which queued behind it once a minute (bench sustained: p99 7.6x after 10 minutes).
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-read")
        self._read_db: sqlite3.Connection | None = None

    # --- plumbing -----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            db = self.disk.connect(
                self.folder / "lienthong.db", isolation_level=None, check_same_thread=False
            )
            db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._db = db
        return self._db

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            db = self._connect()
            changes = db.total_changes
            try:
                done = work(db)
            except sqlite3.OperationalError as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if disk_full(exc):
                    raise self._mark_full("database", exc) from exc
                raise TransientFault(f"SQLite store: {exc}") from exc
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            if self._db is db and db.total_changes != changes:  # a write went through
                self._full.pop("database", None)
            return done

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` on the read-only connection (WAL: it sees the last commit and waits for
        no writer, and no writer waits for it)."""

        def call() -> T:
            if self._read_db is None:
                self._connect_reader()
            assert self._read_db is not None
            try:
                return work(self._read_db)
            except sqlite3.OperationalError as exc:
                raise TransientFault(f"SQLite store: {exc}") from exc

        return await asyncio.get_running_loop().run_in_executor(self._reader, call)

    def _connect_reader(self) -> None:
        self._connect_on_writer_once()
        uri = f"{(self.folder / 'lienthong.db').resolve().as_uri()}?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        db.execute("PRAGMA query_only = ON")
        self._read_db = db

    def _connect_on_writer_once(self) -> None:
        """The database and its WAL exist before a read-only connection opens them."""
        if self._db is None:
            self._executor.submit(self._connect).result()

    def _mark_full(self, part: str, exc: BaseException) -> StoreFull:
        self._full.setdefault(part, (datetime.now(UTC), str(exc)))
        return StoreFull(f"SQLite store, {part}: the disk is full ({exc})")

    async def _write_blob(
        self, write: Callable[[str, Any], bool | None], digest: str, data: Any
    ) -> None:
        try:
            wrote = await asyncio.get_running_loop().run_in_executor(
                self._blob_io, write, digest, data
            )
        except OSError as exc:
            if disk_full(exc):
                raise self._mark_full("blobs", exc) from exc
            raise
        if wrote is not False:  # bytes reached the disk: there is room again
            self._full.pop("blobs", None)

    async def disk_full(self) -> str | None:
        """Why writes fail for want of space, and since when; None while they succeed. A
        part marked full is tried again here (a small file, a small transaction), so the
        mark goes with the fault even when no other write comes."""
        if "blobs" in self._full:
            probe = self.blobs.root / ".space-probe"
            with contextlib.suppress(StoreFull):
                await self._write_blob(
                    lambda _, data: write_atomically(probe, data, self.blobs.disk), "", b"x" * 4096
                )
        if "database" in self._full:
            with contextlib.suppress(TransientFault):
                await self._run(_probe_space)
        if not self._full:
            return None
        return "; ".join(
            f"{part}: disk full since {since.isoformat(timespec='seconds')} ({error})"
            for part, (since, error) in sorted(self._full.items())
        )

    async def close(self) -> None:
        def shut(db: sqlite3.Connection) -> None:
            db.close()
            self._db = None

        def shut_reader() -> None:
            if self._read_db is not None:
                self._read_db.close()
                self._read_db = None

        await asyncio.get_running_loop().run_in_executor(self._reader, shut_reader)
        if self._db is not None:
            await self._run(shut)
        self._executor.shutdown(wait=True)
        self._blob_io.shutdown(wait=True)
        self._reader.shutdown(wait=True)

    # --- schema -------------------------------------------------------------------

    async def migrate(self) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            check_schema(current, len(MIGRATIONS), f"the SQLite store at {self.folder}")
            for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
                if callable(step):
                    step(db, self.blobs)
                else:
                    for statement in filter(str.strip, step.split(";")):
                        db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            db.execute("COMMIT")
            return len(MIGRATIONS)

        return await self._run(work)

    # --- intake -------------------------------------------------------------------

    async def find_digest(self, digest: str) -> IntakeResult | None:
        return await self._run(lambda db: _known_digest(db, digest))

    async def begin_attempt(self, digest: str) -> Attempt:
        def work(db: sqlite3.Connection) -> Attempt:
            known = _known_digest(db, digest)
            if known is not None:
                return Attempt(known=known)
            held = _held(db, digest)
            if held is not None:
                return Attempt(held=held)
            return Attempt(count=_count_attempt(db, digest, None, 1))

        return await self._run(work)

    async def record_attempt(self, digest: str, reason: str | None = None, delta: int = 1) -> int:
        return await self._run(lambda db: _count_attempt(db, digest, reason, delta))

    async def attempt_error(self, digest: str) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT last_error FROM attempts WHERE digest = ?", (digest,)
            ).fetchone()
            return row[0] if row else None

        return await self._run(work)

    async def dead_letter_for(self, digest: str) -> int | None:
        return await self._run(lambda db: _held(db, digest))

    async def clear_attempts(self, digest: str) -> None:
        await self._run(lambda db: _clear_attempts(db, digest))

    async def commit_intake(self, intake: Intake) -> IntakeResult:
        package = intake.package
        key = intake.dedup_key
        if isinstance(intake.data, Path):
            await self._write_blob(self.blobs.adopt, package.digest, intake.data)
        else:
            await self._write_blob(self.blobs.put, package.digest, intake.data)

        blob = self.blobs.path(package.digest)

        def work(db: sqlite3.Connection) -> IntakeResult:
            db.execute("BEGIN IMMEDIATE")
            if not blob.exists():  # collected between its write and now: write it again
                db.execute("ROLLBACK")
                raise TransientFault(f"the bytes of {package.digest[:16]}… went missing")
            same = db.execute(
                "SELECT message_id, level FROM packages WHERE digest = ?", (package.digest,)
            ).fetchone()
            if same:
                db.execute("COMMIT")
                return IntakeResult(Outcome.DUPLICATE, same[0], same[1])
            earlier = db.execute(
                "SELECT d.digest, d.message_id, p.level FROM dedup d "
                "JOIN packages p ON p.message_id = d.message_id WHERE d.key = ?",
                (key,),
            ).fetchone()
            if earlier:
                db.execute("COMMIT")
                outcome = Outcome.DUPLICATE if earlier[0] == package.digest else Outcome.CONFLICT
                return IntakeResult(outcome, earlier[1], earlier[2])
            if owns_document_id(intake):
                first = db.execute(
                    "SELECT message_id, level, sender FROM packages WHERE document_id = ? "
                    "AND kind = 'edoc' ORDER BY received_at, message_id LIMIT 1",
                    (package.document_id,),
                ).fetchone()
                if first and first[2] != package.sender.organ_id:
                    db.execute("COMMIT")
                    return IntakeResult(Outcome.TAKEN, first[0], first[1], first[2])
            now = intake.received_at.isoformat()
            db.execute(
                "INSERT INTO packages (message_id, digest, size, kind, sender, document_id, level, "
                "source, received_at, envelope, recipients, origin, business, about) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    intake.message_id,
                    package.digest,
                    package.size,
                    package.kind.value,
                    package.sender.organ_id,
                    package.document_id,
                    package.level.value,
                    intake.source,
                    now,
                    intake.envelope,
                    json.dumps([organ.organ_id for organ in package.recipients]),
                    intake.origin,
                    *business_of(package),
                ),
            )
            evidence_sqlite.append(db, self.chain, intake.events)
            db.execute(
                "INSERT INTO dedup (key, digest, message_id, created_at) VALUES (?, ?, ?, ?)",
                (key, package.digest, intake.message_id, now),
            )
            db.execute("DELETE FROM attempts WHERE digest = ?", (package.digest,))
            if intake.held is not None:
                bridge_sqlite.hold(db, intake.message_id, intake.held, now)
            db.executemany(
                "INSERT INTO outbox (message_id, destination, target, created_at, done_at, "
                "failure) VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        intake.message_id,
                        item.destination.value,
                        item.target,
                        now,
                        now if item.failure else None,
                        item.failure,
                    )
                    for item in (intake.outbox if intake.held is None else ())
                ],
            )
            db.execute("COMMIT")
            return IntakeResult(Outcome.COMMITTED, intake.message_id, package.level.value)

        return await self._run(work)

    async def document(self, document_id: str) -> KnownDocument | None:
        def work(db: sqlite3.Connection) -> KnownDocument | None:
            row = db.execute(
                "SELECT message_id, sender, recipients FROM packages "
                "WHERE document_id = ? AND kind = 'edoc' ORDER BY received_at, message_id LIMIT 1",
                (document_id,),
            ).fetchone()
            return KnownDocument(row[0], row[1], tuple(json.loads(row[2]))) if row else None

        return await self._run(work)

    # --- outbox and mailboxes -------------------------------------------------------

    async def pending_outbox(
        self,
        limit: int,
        *,
        skip_targets: Collection[str] = (),
        only_prefix: str | None = None,
        skip_prefix: str | None = None,
    ) -> Sequence[OutboxRow]:
        skipped = json.dumps(sorted(skip_targets))

        def work(db: sqlite3.Connection) -> list[OutboxRow]:
            rows = db.execute(
                "SELECT o.id, o.message_id, p.digest, o.destination, o.target, o.created_at, "
                "p.origin, p.sender, p.document_id, p.level, p.kind, p.business, p.about, "
                "EXISTS (SELECT 1 FROM tombstones t WHERE o.destination = 'mailbox' "
                "AND t.document_id = p.document_id AND t.sender = p.sender "
                "AND t.organ_id = o.target AND p.business != 1) "
                "FROM outbox o "
                "JOIN packages p ON p.message_id = o.message_id "
                "WHERE o.done_at IS NULL "
                "AND o.target NOT IN (SELECT value FROM json_each(?)) "
                "AND (? IS NULL OR substr(o.target, 1, length(?)) = ?) "
                "AND (? IS NULL OR substr(o.target, 1, length(?)) != ?) ORDER BY o.id LIMIT ?",
                (skipped, *(only_prefix,) * 3, *(skip_prefix,) * 3, limit),
            ).fetchall()
            return [_outbox_row(r, _time(r[5])) for r in rows]

        return await self._run(work)

    async def mark_outbox_done(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        now = _now()
        await self._run(
            lambda db: db.executemany(
                "UPDATE outbox SET done_at = ? WHERE id = ? AND done_at IS NULL",
                [(now, i) for i in ids],
            )
        )

    async def deliver(self, organ_id: str, message_id: str) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "INSERT INTO mailbox (organ_id, message_id, delivered_at) VALUES (?, ?, ?) "
                "ON CONFLICT (organ_id, message_id) DO NOTHING",
                (organ_id, message_id, _now()),
            )
            return cursor.rowcount == 1

        return await self._run(work)

    async def finish_outbox(
        self,
        deliveries: Sequence[tuple[str, str]],
        done: Sequence[int],
        failed: Sequence[tuple[int, str]] = (),
        events: Sequence[Event] = (),
    ) -> None:
        now = _now()

        def work(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO mailbox (organ_id, message_id, delivered_at) VALUES (?, ?, ?) "
                "ON CONFLICT (organ_id, message_id) DO NOTHING",
                [(organ, message, now) for organ, message in deliveries],
            )
            db.executemany(
                "UPDATE outbox SET done_at = ? WHERE id = ? AND done_at IS NULL",
                [(now, i) for i in done],
            )
            db.executemany(
                "UPDATE outbox SET done_at = ?, failure = ? WHERE id = ? AND done_at IS NULL",
                [(now, reason, i) for i, reason in failed],
            )
            evidence_sqlite.append(db, self.chain, events)
            db.execute("COMMIT")

        if deliveries or done or failed or events:
            await self._run(work)

    async def failed_outbox(self, limit: int = 100) -> Sequence[FailedRow]:
        def work(db: sqlite3.Connection) -> list[FailedRow]:
            rows = db.execute(
                "SELECT id, message_id, target, failure, done_at FROM outbox "
                "WHERE failure IS NOT NULL ORDER BY done_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
            return [FailedRow(r[0], r[1], r[2], r[3], datetime.fromisoformat(r[4])) for r in rows]

        return await self._run(work)

    async def mailbox(
        self,
        organ_id: str,
        *,
        unfetched_only: bool,
        limit: int,
        offset: int = 0,
        max_size: int | None = None,
    ) -> Sequence[MailboxEntry]:
        def work(db: sqlite3.Connection) -> list[MailboxEntry]:
            rows = db.execute(
                "SELECT m.organ_id, m.message_id, p.digest, p.kind, p.sender, p.document_id, "
                "m.delivered_at, m.fetched_at, p.size FROM mailbox m "
                "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = ? "
                "AND (NOT ? OR m.fetched_at IS NULL) AND m.withdrawn_at IS NULL "
                "AND p.size <= ? ORDER BY m.delivered_at, m.message_id LIMIT ? OFFSET ?",
                (organ_id, unfetched_only, max_size or _NO_CAP, limit, offset),
            ).fetchall()
            return [_mailbox_entry(r) for r in rows]

        return await self._run(work)

    async def unpushed(self, organ_id: str, limit: int) -> Sequence[MailboxEntry]:
        def work(db: sqlite3.Connection) -> list[MailboxEntry]:
            rows = db.execute(
                "SELECT m.organ_id, m.message_id, p.digest, p.kind, p.sender, p.document_id, "
                "m.delivered_at, m.fetched_at, p.size FROM mailbox m "
                "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = ? "
                "AND m.pushed_at IS NULL AND m.fetched_at IS NULL AND m.withdrawn_at IS NULL "
                "ORDER BY m.delivered_at, m.message_id LIMIT ?",
                (organ_id, limit),
            ).fetchall()
            return [_mailbox_entry(r) for r in rows]

        return await self._run(work)

    async def mark_pushed(self, organ_id: str, message_ids: Sequence[str]) -> None:
        now = _now()
        await self._run(
            lambda db: db.executemany(
                "UPDATE mailbox SET pushed_at = ? WHERE organ_id = ? AND message_id = ?",
                [(now, organ_id, m) for m in message_ids],
            )
        )

    async def mailbox_entry(self, organ_id: str, message_id: str) -> MailboxEntry | None:
        def work(db: sqlite3.Connection) -> MailboxEntry | None:
            row = db.execute(
                "SELECT m.organ_id, m.message_id, p.digest, p.kind, p.sender, p.document_id, "
                "m.delivered_at, m.fetched_at, p.size FROM mailbox m "
                "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = ? "
                "AND m.message_id = ? AND m.withdrawn_at IS NULL",
                (organ_id, message_id),
            ).fetchone()
            return _mailbox_entry(row) if row else None

        return await self._run(work)

    async def mark_fetched(
        self, organ_id: str, message_ids: Sequence[str], events: Sequence[Event] = ()
    ) -> int:
        now = _now()
        event_of = {e.message_id: e for e in events}

        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            marked = []
            for message_id in dict.fromkeys(message_ids):
                cursor = db.execute(
                    "UPDATE mailbox SET fetched_at = ? WHERE organ_id = ? AND message_id = ? "
                    "AND fetched_at IS NULL AND withdrawn_at IS NULL",
                    (now, organ_id, message_id),
                )
                if cursor.rowcount == 1:
                    marked.append(message_id)
            evidence_sqlite.append(db, self.chain, [event_of[m] for m in marked if m in event_of])
            db.execute("COMMIT")
            return len(marked)

        return await self._run(work)

    async def trail(self, message_id: str) -> Trail | None:
        def work(db: sqlite3.Connection) -> Trail | None:
            head = db.execute(
                "SELECT sender, document_id, kind, level, source, received_at FROM packages "
                "WHERE message_id = ?",
                (message_id,),
            ).fetchone()
            if head is None:
                return None
            rows = db.execute(
                "SELECT o.destination, o.target, o.created_at, o.done_at, o.failure, "
                "m.delivered_at, m.fetched_at FROM outbox o LEFT JOIN mailbox m "
                "ON o.destination = 'mailbox' AND m.organ_id = o.target "
                "AND m.message_id = o.message_id WHERE o.message_id = ? ORDER BY o.id",
                (message_id,),
            ).fetchall()
            steps = []
            for destination, target, created, done, failure, delivered, fetched in rows:
                state, at, reason = trail_state(
                    Destination(destination),
                    datetime.fromisoformat(created),
                    _time(done),
                    failure,
                    _time(delivered),
                    _time(fetched),
                )
                steps.append(TrailStep(Destination(destination), target, state, at, reason))
            return Trail(
                message_id,
                head[0],
                head[1],
                head[2],
                head[3],
                head[4],
                datetime.fromisoformat(head[5]),
                tuple(steps),
            )

        return await self._run(work)

    async def package_bytes(self, digest: str) -> bytes:
        return await asyncio.get_running_loop().run_in_executor(
            self._blob_io, self.blobs.get, digest
        )

    def spool_folder(self) -> Path | None:
        folder = self.folder / "spool"
        folder.mkdir(exist_ok=True)
        return folder

    async def package_file(self, digest: str) -> Path | None:
        path = self.blobs.path(digest)
        if not await asyncio.get_running_loop().run_in_executor(self._blob_io, path.is_file):
            raise KeyError(digest)
        return path

    async def envelope(self, message_id: str) -> bytes:
        def work(db: sqlite3.Connection) -> bytes:
            row = db.execute(
                "SELECT envelope FROM packages WHERE message_id = ?", (message_id,)
            ).fetchone()
            if row is None:
                raise KeyError(message_id)
            return bytes(row[0])

        return await self._run(work)

    async def withdraw(
        self, organ_id: str, document_id: str, sender: str, by_message_id: str, at: datetime
    ) -> Sequence[Withdrawal]:
        when = evidence_sqlite.utc(at)

        def work(db: sqlite3.Connection) -> list[Withdrawal]:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute(
                "SELECT m.message_id, m.fetched_at, m.withdrawn_at, p.origin FROM mailbox m "
                "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = ? "
                "AND p.document_id = ? AND p.sender = ? AND p.business != 1 "
                "AND m.message_id != ? ORDER BY m.delivered_at, m.message_id",
                (organ_id, document_id, sender, by_message_id),
            ).fetchall()
            found = []
            for message_id, fetched, withdrawn, origin in rows:
                if fetched is not None and withdrawn is None:
                    found.append(Withdrawal(message_id, "already fetched", origin))
                    continue
                db.execute(
                    "UPDATE mailbox SET withdrawn_at = coalesce(withdrawn_at, ?) "
                    "WHERE organ_id = ? AND message_id = ?",
                    (when, organ_id, message_id),
                )
                found.append(Withdrawal(message_id, "withdrawn", origin))
            db.execute(
                "INSERT INTO tombstones (document_id, sender, organ_id, message_id, at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (document_id, sender, organ_id, by_message_id, when),
            )
            db.execute("COMMIT")
            return found

        return await self._run(work)

    # --- evidence -------------------------------------------------------------------

    async def record_events(self, events: Sequence[Event]) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute("BEGIN IMMEDIATE")
            added = evidence_sqlite.append(db, self.chain, events)
            db.execute("COMMIT")
            return added

        return await self._run(work) if events else 0

    async def pending_reports(
        self, limit: int, *, skip_to: Collection[str] = ()
    ) -> Sequence[tuple[int, Event]]:
        skipped = json.dumps(sorted(skip_to))

        def work(db: sqlite3.Connection) -> list[tuple[int, Event]]:
            rows = db.execute(
                "SELECT id, chain, seq, prev, hash, record, report_to FROM evidence "
                "WHERE report_to IS NOT NULL AND reported_at IS NULL AND chain = ? "
                "AND report_to NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?",
                (self.chain, skipped, limit),
            ).fetchall()
            return [(r[0], evidence_sqlite.entry_of(r[1:]).event) for r in rows]

        return await self._run(work)

    async def mark_reported(self, ids: Sequence[int]) -> None:
        now = _now()
        if ids:
            await self._run(
                lambda db: db.executemany(
                    "UPDATE evidence SET reported_at = ? WHERE id = ?", [(now, i) for i in ids]
                )
            )

    async def events_about(
        self, *, message_id: str | None = None, document_id: str | None = None
    ) -> Sequence[Event]:
        return await self._run(lambda db: evidence_sqlite.about(db, message_id, document_id))

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
        return await self._run(
            functools.partial(
                evidence_sqlite.entries,
                chain=chain,
                after=after,
                limit=limit,
                party=party,
                since=since,
                until=until,
            )
        )

    async def chain_heads(self) -> Mapping[str, tuple[int, str]]:
        def work(db: sqlite3.Connection) -> dict[str, tuple[int, str]]:
            rows = db.execute("SELECT chain, seq, hash FROM chain_heads").fetchall()
            return {r[0]: (int(r[1]), str(r[2])) for r in rows}

        return await self._run(work)

    # --- dead letters ---------------------------------------------------------------

    async def add_dead_letter(
        self, data: bytes, source: str, reason: str, attempts: int
    ) -> tuple[int, bool]:
        digest = hashlib.sha256(data).hexdigest()
        await asyncio.get_running_loop().run_in_executor(
            self._blob_io, self.blobs.put, digest, data
        )

        def work(db: sqlite3.Connection) -> tuple[int, bool]:
            db.execute("BEGIN IMMEDIATE")
            held = db.execute(
                "SELECT id FROM dead_letters WHERE digest = ? AND replayed_at IS NULL", (digest,)
            ).fetchone()
            if held:
                db.execute("COMMIT")
                return int(held[0]), False
            row = db.execute(
                "INSERT INTO dead_letters (digest, source, reason, attempts, dead_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (digest, source, reason, attempts, _now()),
            ).fetchone()
            db.execute("COMMIT")
            return int(row[0]), True

        return await self._run(work)

    async def dead_letters(self, *, include_replayed: bool = False) -> Sequence[DeadLetter]:
        def work(db: sqlite3.Connection) -> list[DeadLetter]:
            rows = db.execute(
                "SELECT id, digest, source, reason, attempts, dead_at, replayed_at, purged_at "
                "FROM dead_letters WHERE ? OR (replayed_at IS NULL AND purged_at IS NULL) "
                "ORDER BY id",
                (include_replayed,),
            ).fetchall()
            return [
                DeadLetter(
                    r[0],
                    r[1],
                    r[2],
                    r[3],
                    r[4],
                    _time(r[5]) or datetime.now(UTC),
                    _time(r[6]),
                    _time(r[7]),
                )
                for r in rows
            ]

        return await self._run(work)

    async def purge_dead_letter(
        self, dead_letter_id: int, at: datetime, events: Sequence[Event]
    ) -> bool:
        def work(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            purged = ops_sqlite.purge(db, self.chain, dead_letter_id, at, events)
            db.execute("COMMIT")
            return purged

        return await self._run(work)

    async def operations(self, since: datetime) -> Operations:
        return await self._read(lambda db: ops_sqlite.operations(db, since))

    async def latest_from(self, organs: Collection[str]) -> Mapping[str, str]:
        return await self._read(lambda db: ops_sqlite.latest_from(db, organs))

    async def events_of_kind(self, kind: str, since: datetime, limit: int = 500) -> Sequence[Event]:
        return await self._read(lambda db: ops_sqlite.events_of_kind(db, kind, since, limit))

    async def dead_letter_bytes(self, dead_letter_id: int) -> bytes:
        def work(db: sqlite3.Connection) -> str:
            row = db.execute(
                "SELECT digest FROM dead_letters WHERE id = ?", (dead_letter_id,)
            ).fetchone()
            if row is None:
                raise KeyError(dead_letter_id)
            return str(row[0])

        return await self.package_bytes(await self._run(work))

    async def mark_replayed(self, dead_letter_id: int, replayed: bool = True) -> None:
        when = _now() if replayed else None
        await self._run(
            lambda db: db.execute(
                "UPDATE dead_letters SET replayed_at = ? WHERE id = ?", (when, dead_letter_id)
            )
        )

    # --- housekeeping ---------------------------------------------------------------

    async def claim_key(self, caller: str, key: str, digest: str, at: datetime) -> str | None:
        def work(db: sqlite3.Connection) -> str | None:
            db.execute(
                "INSERT INTO idempotency (caller, key, digest, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (caller, key, digest, evidence_sqlite.utc(at)),
            )
            row = db.execute(
                "SELECT digest FROM idempotency WHERE caller = ? AND key = ?", (caller, key)
            ).fetchone()
            return None if row[0] == digest else str(row[0])

        return await self._run(work)

    # --- quarantine and upstream ids (adapters/bridge_sqlite.py) --------------------------

    async def quarantined(self, *, decided: bool = False) -> Sequence[HeldPackage]:
        return await self._run(lambda db: bridge_sqlite.quarantined(db, decided))

    async def held_package(self, message_id: str) -> HeldPackage | None:
        return await self._run(lambda db: bridge_sqlite.held_package(db, message_id))

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
        def work(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")  # _run rolls back on any error
            when = at.isoformat()
            decided = bridge_sqlite.decide(db, message_id, decision, by, when, note, outbox)
            if decided:
                evidence_sqlite.append(db, self.chain, events)
            db.execute("COMMIT")
            return decided

        return await self._run(work)

    async def link_upstream(
        self, upstream: str, direction: str, doc_id: str, message_id: str, at: datetime
    ) -> str:
        return await self._run(
            lambda db: bridge_sqlite.link(
                db, upstream, direction, doc_id, message_id, at.isoformat()
            )
        )

    async def upstream_message(self, upstream: str, direction: str, doc_id: str) -> str | None:
        return await self._run(lambda db: bridge_sqlite.message_of(db, upstream, direction, doc_id))

    async def upstream_links(self, message_id: str) -> Sequence[UpstreamLink]:
        return await self._run(lambda db: bridge_sqlite.links_of(db, message_id))

    async def prune_dedup(self, older_than: datetime) -> int:
        def work(db: sqlite3.Connection) -> int:
            db.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (evidence_sqlite.utc(older_than),)
            )
            return db.execute(
                "DELETE FROM dedup WHERE created_at < ?", (older_than.isoformat(),)
            ).rowcount

        return await self._run(work)

    async def collect_garbage(self, grace_seconds: float = 3600) -> int:
        """Delete blobs that no row names and that are older than ``grace_seconds``."""

        def referenced(db: sqlite3.Connection) -> set[str]:
            rows = db.execute(
                "SELECT digest FROM packages UNION SELECT digest FROM dead_letters"
            ).fetchall()
            return {r[0] for r in rows}

        def remove_if_orphaned(db: sqlite3.Connection, digest: str) -> bool:
            # under the write lock: no intake can name it between the check and the delete
            db.execute("BEGIN IMMEDIATE")
            try:
                named = db.execute(
                    "SELECT 1 FROM packages WHERE digest = ? UNION ALL "
                    "SELECT 1 FROM dead_letters WHERE digest = ?",
                    (digest, digest),
                ).fetchone()
                if named or self.blobs.path(digest).stat().st_mtime >= cutoff:
                    return False
                self.blobs.remove(digest)
                return True
            finally:
                db.execute("COMMIT")

        loop = asyncio.get_running_loop()
        candidates = await loop.run_in_executor(self._executor, self.blobs.all_digests)
        keep = await self._run(referenced)
        cutoff = time.time() - grace_seconds
        removed = 0
        for digest, mtime in candidates:
            if digest not in keep and mtime < cutoff:
                removed += await self._run(functools.partial(remove_if_orphaned, digest=digest))
        return removed


def _known_digest(db: sqlite3.Connection, digest: str) -> IntakeResult | None:
    row = db.execute(
        "SELECT message_id, level, sender FROM packages WHERE digest = ?", (digest,)
    ).fetchone()
    return IntakeResult(Outcome.DUPLICATE, row[0], row[1], row[2]) if row else None


def _held(db: sqlite3.Connection, digest: str) -> int | None:
    row = db.execute(
        "SELECT id FROM dead_letters WHERE digest = ? AND replayed_at IS NULL", (digest,)
    ).fetchone()
    return int(row[0]) if row else None


def _probe_space(db: sqlite3.Connection) -> None:
    """A write and its undoing, committed: it passes only when the disk takes writes."""
    db.execute("BEGIN IMMEDIATE")
    db.execute(
        "INSERT OR REPLACE INTO attempts (digest, count, updated_at) VALUES ('space-probe', 0, ?)",
        (_now(),),
    )
    db.execute("DELETE FROM attempts WHERE digest = 'space-probe'")
    db.execute("COMMIT")


def _count_attempt(db: sqlite3.Connection, digest: str, reason: str | None, delta: int) -> int:
    # An attempt must survive the process (kill -9), not a power cut: in WAL mode,
    # synchronous=NORMAL gives exactly that without an fsync; the next FULL commit makes
    # it durable too.
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        row = db.execute(
            "INSERT INTO attempts (digest, count, last_error, updated_at) "
            "VALUES (?, max(?, 0), ?, ?) "
            "ON CONFLICT (digest) DO UPDATE SET count = max(count + ?, 0), "
            "last_error = coalesce(excluded.last_error, last_error), "
            "updated_at = excluded.updated_at "
            "RETURNING count",
            (digest, delta, reason, _now(), delta),
        ).fetchone()
    finally:
        db.execute("PRAGMA synchronous = FULL")
    return int(row[0])


def _clear_attempts(db: sqlite3.Connection, digest: str) -> None:
    # like an attempt, its clearing need not survive a power cut: lost, the count is one
    # too high for the next try of the same bytes. Without an fsync here, a refused package
    # does not hold up the next package's commit behind a disk flush.
    db.execute("PRAGMA synchronous = NORMAL")
    try:
        db.execute("DELETE FROM attempts WHERE digest = ?", (digest,))
    finally:
        db.execute("PRAGMA synchronous = FULL")


def _outbox_row(r: Any, created_at: datetime | None) -> OutboxRow:
    return OutboxRow(
        r[0],
        r[1],
        r[2],
        Destination(r[3]),
        r[4],
        created_at,
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        int(r[11]),
        r[12],
        bool(r[13]),
    )


def _mailbox_entry(row: Any) -> MailboxEntry:
    return MailboxEntry(
        organ_id=row[0],
        message_id=row[1],
        digest=row[2],
        kind=row[3],
        sender=row[4],
        document_id=row[5],
        delivered_at=_time(row[6]) or datetime.now(UTC),
        fetched_at=_time(row[7]),
        size=int(row[8]),
    )
