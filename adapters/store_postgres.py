"""The shared store: PostgreSQL, for nodes that run several service instances.

Package bytes live in the ``blobs`` table, so every instance reaches them. Intake is one
transaction; two instances racing on one dedup key are ordered by the key's unique
index (the loser waits, then sees the winner's row). Migrations run under an advisory
lock so that instances starting together do not race either.

What the instances poll is handed out by lease (docs/operations.md, "Two instances of one
node"): outbox rows (``pending_outbox``), reports (``pending_reports``) and mail to push
(``unpushed``) are claimed in one statement each, ``FOR UPDATE SKIP LOCKED``, and leased
to this store object (its ``owner``, also its connections' ``application_name``) for
``lease_s``. A row is another's while its lease runs and its owner is connected; an
instance that dies leaves its rows to the next claim (its connections go with it), one
that hangs to the end of its lease: at-least-once, with the receiver's dedup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from adapters import bridge_postgres, evidence_postgres, ops_postgres
from exchange.errors import ConfigurationError, PackageTooLarge, StoreFull, TransientFault
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

_MIGRATION_LOCK = 0x6C69656E  # "lien"

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        data   BYTEA NOT NULL
    );
    CREATE TABLE packages (
        message_id  TEXT PRIMARY KEY,
        digest      TEXT NOT NULL UNIQUE REFERENCES blobs (digest),
        size        BIGINT NOT NULL,
        kind        TEXT NOT NULL,
        sender      TEXT NOT NULL,
        document_id TEXT,
        level       TEXT NOT NULL,
        source      TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        envelope    BYTEA NOT NULL
    );
    CREATE TABLE dedup (
        key        TEXT PRIMARY KEY,
        digest     TEXT NOT NULL,
        message_id TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX dedup_created ON dedup (created_at);
    CREATE TABLE outbox (
        id          BIGSERIAL PRIMARY KEY,
        message_id  TEXT NOT NULL REFERENCES packages (message_id),
        destination TEXT NOT NULL,
        target      TEXT NOT NULL,
        created_at  TIMESTAMPTZ NOT NULL,
        done_at     TIMESTAMPTZ,
        UNIQUE (message_id, destination, target)
    );
    CREATE INDEX outbox_pending ON outbox (id) WHERE done_at IS NULL;
    CREATE TABLE mailbox (
        organ_id     TEXT NOT NULL,
        message_id   TEXT NOT NULL REFERENCES packages (message_id),
        delivered_at TIMESTAMPTZ NOT NULL,
        fetched_at   TIMESTAMPTZ,
        PRIMARY KEY (organ_id, message_id)
    );
    CREATE TABLE attempts (
        digest     TEXT PRIMARY KEY,
        count      INTEGER NOT NULL,
        last_error TEXT,
        updated_at TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE dead_letters (
        id          BIGSERIAL PRIMARY KEY,
        digest      TEXT NOT NULL REFERENCES blobs (digest),
        source      TEXT NOT NULL,
        reason      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        dead_at     TIMESTAMPTZ NOT NULL,
        replayed_at TIMESTAMPTZ
    );
    """,
    # version 2: the DocumentId index that routes statuses
    """
    ALTER TABLE packages ADD COLUMN recipients TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX packages_document ON packages (document_id, kind);
    """,
    # version 3: an outbox row given up (expired) keeps its reason
    """
    ALTER TABLE outbox ADD COLUMN failure TEXT;
    CREATE INDEX outbox_failed ON outbox (done_at) WHERE failure IS NOT NULL;
    """,
    # version 4: the evidence log, each package's origin node, withdrawn mail, tombstones
    evidence_postgres.MIGRATION,
    # version 5: idempotency keys of HTTP submissions
    """
    CREATE TABLE idempotency (
        caller     TEXT NOT NULL,
        key        TEXT NOT NULL,
        digest     TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (caller, key)
    );
    CREATE INDEX idempotency_created ON idempotency (created_at);
    """,
    # version 6: mail pushed to an agency's AMQP queue
    "ALTER TABLE mailbox ADD COLUMN pushed_at TIMESTAMPTZ",
    # version 7: quarantined packages, and packages' ids at upstream axes
    bridge_postgres.MIGRATION,
    # version 8: purged dead letters; the indexes behind GET /status
    ops_postgres.MIGRATION,
    # version 9: leases, so that several service instances share what they poll
    """
    ALTER TABLE outbox ADD COLUMN leased_until TIMESTAMPTZ, ADD COLUMN leased_by TEXT;
    ALTER TABLE evidence ADD COLUMN report_leased_until TIMESTAMPTZ,
        ADD COLUMN report_leased_by TEXT;
    ALTER TABLE mailbox ADD COLUMN push_leased_until TIMESTAMPTZ, ADD COLUMN push_leased_by TEXT;
    """,
]

# The owners of leases still connected: their leases stand until they run out; the leases
# of an owner gone (its process died, its connections with it) are free at once.
_LIVE = (
    "live AS (SELECT application_name AS owner FROM pg_stat_activity "
    "WHERE application_name LIKE 'lienthong/%%')"
)


def _free(until: str, by: str) -> str:
    """The condition that a row's lease (``until``, ``by`` columns) lets this owner take
    it: never leased, leased to this owner, run out, or its owner gone."""
    return (
        f"({by} IS NULL OR {by} = %(me)s OR {until} < now() "  # noqa: S608 - column names
        f"OR {by} NOT IN (SELECT owner FROM live))"
    )


_CLAIM_OUTBOX = f"""
WITH {_LIVE},
picked AS (
    SELECT id FROM outbox
    WHERE done_at IS NULL AND NOT (target = ANY(%(skip)s::text[]))
    AND (%(only)s::text IS NULL OR left(target, length(%(only)s::text)) = %(only)s::text)
    AND (%(not)s::text IS NULL OR left(target, length(%(not)s::text)) != %(not)s::text)
    AND {_free("leased_until", "leased_by")}
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE outbox o SET leased_until = now() + make_interval(secs => %(lease)s),
    leased_by = %(me)s FROM picked WHERE o.id = picked.id
    RETURNING o.id, o.message_id, o.destination, o.target, o.created_at
)
SELECT c.id, c.message_id, p.digest, c.destination, c.target, c.created_at,
p.origin, p.sender, p.document_id, p.level, p.kind, p.business, p.about,
EXISTS (SELECT 1 FROM tombstones t WHERE c.destination = 'mailbox'
AND t.document_id = p.document_id AND t.sender = p.sender
AND t.organ_id = c.target AND p.business != 1)
FROM claimed c JOIN packages p ON p.message_id = c.message_id ORDER BY c.id
"""  # noqa: S608 - only constants are formatted in

_CLAIM_REPORTS = f"""
WITH {_LIVE},
picked AS (
    SELECT id FROM evidence
    WHERE report_to IS NOT NULL AND reported_at IS NULL
    AND NOT (report_to = ANY(%(skip)s::text[]))
    AND {_free("report_leased_until", "report_leased_by")}
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE evidence e SET report_leased_until = now() + make_interval(secs => %(lease)s),
    report_leased_by = %(me)s FROM picked WHERE e.id = picked.id
    RETURNING e.id, e.chain, e.seq, e.prev, e.hash, e.record, e.report_to
)
SELECT * FROM claimed ORDER BY id
"""  # noqa: S608 - only constants are formatted in

_CLAIM_PUSH = f"""
WITH {_LIVE},
picked AS (
    SELECT organ_id, message_id FROM mailbox
    WHERE organ_id = %(organ)s AND pushed_at IS NULL AND fetched_at IS NULL
    AND withdrawn_at IS NULL AND {_free("push_leased_until", "push_leased_by")}
    ORDER BY delivered_at, message_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE mailbox m SET push_leased_until = now() + make_interval(secs => %(lease)s),
    push_leased_by = %(me)s FROM picked
    WHERE m.organ_id = picked.organ_id AND m.message_id = picked.message_id
    RETURNING m.organ_id, m.message_id, m.delivered_at, m.fetched_at
)
SELECT c.organ_id, c.message_id, p.digest, p.kind, p.sender, p.document_id,
c.delivered_at, c.fetched_at, p.size
FROM claimed c JOIN packages p ON p.message_id = c.message_id
ORDER BY c.delivered_at, c.message_id
"""  # noqa: S608 - only constants are formatted in

# Mail goes into mailboxes unless a revoke left a tombstone for it after its outbox row
# was claimed (another instance withdrew the document meanwhile): the rows hit are named,
# and the caller undoes the whole transaction, so the batch is taken again and judged anew.
_DELIVER = """
WITH wanted AS (
    SELECT * FROM unnest(%(organs)s::text[], %(messages)s::text[]) AS w (organ_id, message_id)
),
hit AS (
    SELECT w.organ_id, w.message_id FROM wanted w
    JOIN packages p ON p.message_id = w.message_id
    JOIN tombstones t ON t.document_id = p.document_id AND t.sender = p.sender
    AND t.organ_id = w.organ_id AND p.business != 1
),
added AS (
    INSERT INTO mailbox (organ_id, message_id, delivered_at)
    SELECT organ_id, message_id, %(now)s FROM wanted
    WHERE NOT EXISTS (SELECT 1 FROM hit)
    ON CONFLICT (organ_id, message_id) DO NOTHING
)
SELECT organ_id, message_id FROM hit
"""
# the advisory lock space of an agency's mailbox: deliveries share it, a withdrawal holds
# it alone (two-key locks: no clash with the one-key locks of intake)
_MAILBOX_LOCK = 0x6D61696C  # "mail"


def _now() -> datetime:
    return datetime.now(UTC)


async def _lock_mailboxes(
    conn: psycopg.AsyncConnection[Any] | psycopg.AsyncCursor[Any],
    organs: Sequence[str],
    *,
    alone: bool = False,
) -> None:
    """Hold these agencies' mailboxes to the end of the transaction: shared (deliveries),
    or alone (a withdrawal); in one order, so that two batches never wait on each other."""
    kind = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
    await conn.execute(
        f"SELECT {kind}(%s::int, k) FROM (SELECT DISTINCT hashtext(o) AS k "  # noqa: S608
        "FROM unnest(%s::text[]) o ORDER BY k) s",
        (_MAILBOX_LOCK, list(organs)),
    )


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "lienthong",
        pool_size: int = 4,
        timeout_s: float = 10.0,
        chain: str = "main",
        lease_s: float = 60.0,
    ) -> None:
        self.chain = chain  # this instance's evidence chain
        self._full: tuple[datetime, str] | None = None  # since when, and why, the disk is full
        # who holds the leases this store object takes: unique to it, and the
        # application_name of its connections, by which others see that it is alive
        self.owner = f"lienthong/{uuid.uuid4().hex[:16]}"
        self.lease_s = lease_s
        if not schema.isidentifier():
            raise ConfigurationError(f"store.schema: {schema!r} is not a plain identifier")
        self.schema = schema
        self._timeout = timeout_s
        self._pool = AsyncConnectionPool(
            dsn,
            # two, while the pool has room: one replaced (max_lifetime) is never the only
            # one, so the owner's leases are never seen without it
            min_size=min(2, pool_size),
            max_size=pool_size,
            timeout=timeout_s,
            open=False,
            # every statement has a deadline: a stuck lock must not stall the node
            kwargs={
                "options": f"-c search_path={schema} -c lock_timeout=5000 "
                "-c statement_timeout=30000 -c idle_in_transaction_session_timeout=60000 "
                # the DocumentId check reads after its advisory lock: it needs each
                # statement's own snapshot, whatever the server's default
                "-c default_transaction_isolation=read\\ committed",
                "application_name": self.owner,
                "autocommit": True,
            },
        )

    async def _open(self) -> None:
        if self._pool.closed:
            try:
                await self._pool.open(wait=True, timeout=self._timeout)
            except Exception as exc:
                raise TransientFault(f"PostgreSQL store unreachable: {exc}") from exc

    async def _execute(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        await self._open()
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query.encode(), params)
                return await cursor.fetchall() if cursor.description else []
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    def _fault(self, exc: psycopg.OperationalError) -> TransientFault:
        """A driver's error as ours: a full disk (SQLSTATE 53100) is ``store.disk_full``
        and is remembered for ``disk_full`` until a package is committed again."""
        if isinstance(exc, psycopg.errors.DiskFull):
            self._full = self._full or (datetime.now(UTC), str(exc))
            return StoreFull(f"PostgreSQL store: the disk is full ({exc})")
        return TransientFault(f"PostgreSQL store: {exc}")

    async def disk_full(self) -> str | None:
        """Why writes fail for want of space, and since when; None while they succeed.
        While marked, a one-row write is tried here, so the mark goes with the fault even
        when no package comes to be committed (a node fed by links, a /readyz watcher)."""
        full = self._full
        if full is None:
            return None
        with contextlib.suppress(TransientFault):
            await self._execute("UPDATE schema_version SET version = version")
            self._full = None
            return None
        since, error = full
        return f"database: disk full since {since.isoformat(timespec='seconds')} ({error})"

    async def close(self) -> None:
        await self._pool.close()

    async def migrate(self) -> int:
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                await conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"
                )
                cursor = await conn.execute("SELECT max(version) FROM schema_version")
                row = await cursor.fetchone()
                current = (row[0] if row else None) or 0
                check_schema(
                    current, len(MIGRATIONS), f"the PostgreSQL store in schema {self.schema}"
                )
                for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                    await conn.execute(script.encode())
                    await conn.execute(
                        "INSERT INTO schema_version (version) VALUES (%s)", (version,)
                    )
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc
        return len(MIGRATIONS)

    async def find_digest(self, digest: str) -> IntakeResult | None:
        rows = await self._execute(
            "SELECT message_id, level, sender FROM packages WHERE digest = %s", (digest,)
        )
        return IntakeResult(Outcome.DUPLICATE, *rows[0]) if rows else None

    async def begin_attempt(self, digest: str) -> Attempt:
        rows = await self._execute(
            "WITH known AS (SELECT message_id, level, sender FROM packages WHERE digest = %(d)s), "
            "held AS (SELECT min(id) AS id FROM dead_letters "
            "         WHERE digest = %(d)s AND replayed_at IS NULL), "
            "counted AS ("
            " INSERT INTO attempts (digest, count, last_error, updated_at) "
            " SELECT %(d)s, 1, NULL, %(now)s "
            " WHERE NOT EXISTS (SELECT 1 FROM known) AND (SELECT id FROM held) IS NULL "
            " ON CONFLICT (digest) DO UPDATE SET count = attempts.count + 1, "
            " updated_at = excluded.updated_at RETURNING count) "
            "SELECT k.message_id, k.level, k.sender, (SELECT id FROM held), "
            "(SELECT count FROM counted) FROM (SELECT 1) one LEFT JOIN known k ON true",
            {"d": digest, "now": _now()},
        )
        message_id, level, sender, held, count = rows[0]
        if message_id is not None:
            return Attempt(known=IntakeResult(Outcome.DUPLICATE, message_id, level, sender))
        if held is not None:
            return Attempt(held=int(held))
        return Attempt(count=int(count))

    async def record_attempt(self, digest: str, reason: str | None = None, delta: int = 1) -> int:
        rows = await self._execute(
            "INSERT INTO attempts (digest, count, last_error, updated_at) "
            "VALUES (%s, greatest(%s, 0), %s, %s) "
            "ON CONFLICT (digest) DO UPDATE SET count = greatest(attempts.count + %s, 0), "
            "last_error = coalesce(excluded.last_error, attempts.last_error), "
            "updated_at = excluded.updated_at RETURNING count",
            (digest, delta, reason, _now(), delta),
        )
        return int(rows[0][0])

    async def attempt_error(self, digest: str) -> str | None:
        rows = await self._execute("SELECT last_error FROM attempts WHERE digest = %s", (digest,))
        return rows[0][0] if rows else None

    async def dead_letter_for(self, digest: str) -> int | None:
        rows = await self._execute(
            "SELECT id FROM dead_letters WHERE digest = %s AND replayed_at IS NULL", (digest,)
        )
        return int(rows[0][0]) if rows else None

    async def clear_attempts(self, digest: str) -> None:
        await self._execute("DELETE FROM attempts WHERE digest = %s", (digest,))

    async def commit_intake(self, intake: Intake) -> IntakeResult:
        try:
            return await self._commit_intake(intake)
        except psycopg.errors.UniqueViolation:
            # the same bytes committed meanwhile under another key (another instance took
            # them from a link while this one took them from an agency, say): once more,
            # and they are known now, so this is the duplicate
            return await self._commit_intake(intake)

    async def _commit_intake(self, intake: Intake) -> IntakeResult:
        package = intake.package
        key = intake.dedup_key
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if owns_document_id(intake):
                    # intakes of one DocumentId, one at a time, to the end of the transaction
                    await conn.execute(
                        "SELECT pg_advisory_xact_lock(hashtext(%s))", (package.document_id,)
                    )
                    first = await (
                        await conn.execute(
                            "SELECT message_id, level, sender FROM packages "
                            "WHERE document_id = %s AND kind = 'edoc' "
                            "ORDER BY received_at, message_id LIMIT 1",
                            (package.document_id,),
                        )
                    ).fetchone()
                    if first is not None and first[2] != package.sender.organ_id:
                        return IntakeResult(Outcome.TAKEN, first[0], first[1], first[2])
                claimed = await (
                    await conn.execute(
                        "INSERT INTO dedup (key, digest, message_id, created_at) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (key) DO NOTHING RETURNING key",
                        (key, package.digest, intake.message_id, intake.received_at),
                    )
                ).fetchone()
                if claimed is None:
                    earlier = await (
                        await conn.execute(
                            "SELECT d.digest, d.message_id, p.level FROM dedup d "
                            "JOIN packages p ON p.message_id = d.message_id WHERE d.key = %s",
                            (key,),
                        )
                    ).fetchone()
                    assert earlier is not None, "a claimed key always has its package"
                    same = earlier[0] == package.digest
                    return IntakeResult(
                        Outcome.DUPLICATE if same else Outcome.CONFLICT, earlier[1], earlier[2]
                    )
                same_bytes = await (
                    await conn.execute(
                        "SELECT message_id, level FROM packages WHERE digest = %s",
                        (package.digest,),
                    )
                ).fetchone()
                if same_bytes is not None:  # known bytes whose dedup key had expired
                    await conn.execute(
                        "UPDATE dedup SET message_id = %s WHERE key = %s", (same_bytes[0], key)
                    )
                    return IntakeResult(Outcome.DUPLICATE, same_bytes[0], same_bytes[1])
                if isinstance(intake.data, Path):
                    raise PackageTooLarge(
                        "this node keeps packages in PostgreSQL, which takes none above "
                        "the inline cap (docs/large-packages.md)"
                    )
                await conn.execute(
                    "INSERT INTO blobs (digest, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (package.digest, intake.data),
                )
                await conn.execute(
                    "INSERT INTO packages (message_id, digest, size, kind, sender, document_id, "
                    "level, source, received_at, envelope, recipients, origin, business, about) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (
                        intake.message_id,
                        package.digest,
                        package.size,
                        package.kind.value,
                        package.sender.organ_id,
                        package.document_id,
                        package.level.value,
                        intake.source,
                        intake.received_at,
                        intake.envelope,
                        json.dumps([organ.organ_id for organ in package.recipients]),
                        intake.origin,
                        *business_of(package),
                    ),
                )
                await evidence_postgres.append(conn, self.chain, intake.events)
                await conn.execute("DELETE FROM attempts WHERE digest = %s", (package.digest,))
                if intake.held is not None:
                    await bridge_postgres.hold(
                        conn, intake.message_id, intake.held, intake.received_at
                    )
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO outbox (message_id, destination, target, created_at, "
                        "done_at, failure) VALUES (%s, %s, %s, %s, %s, %s)",
                        [
                            (
                                intake.message_id,
                                item.destination.value,
                                item.target,
                                intake.received_at,
                                intake.received_at if item.failure else None,
                                item.failure,
                            )
                            for item in (intake.outbox if intake.held is None else ())
                        ],
                    )
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc
        self._full = None  # a package committed: the disk takes writes again
        return IntakeResult(Outcome.COMMITTED, intake.message_id, package.level.value)

    async def document(self, document_id: str) -> KnownDocument | None:
        rows = await self._execute(
            "SELECT message_id, sender, recipients FROM packages "
            "WHERE document_id = %s AND kind = 'edoc' ORDER BY received_at, message_id LIMIT 1",
            (document_id,),
        )
        if not rows:
            return None
        return KnownDocument(rows[0][0], rows[0][1], tuple(json.loads(rows[0][2])))

    async def pending_outbox(
        self,
        limit: int,
        *,
        skip_targets: Collection[str] = (),
        only_prefix: str | None = None,
        skip_prefix: str | None = None,
    ) -> Sequence[OutboxRow]:
        """The oldest rows not yet done that no other instance holds, claimed in one
        statement: leased to this store object for ``lease_s`` (asked again, it hands
        back its own rows not done yet, and holds them longer)."""
        rows = await self._execute(
            _CLAIM_OUTBOX,
            {
                "skip": sorted(skip_targets),
                "only": only_prefix,
                "not": skip_prefix,
                "limit": limit,
                **self._lease(),
            },
        )
        return [
            OutboxRow(
                r[0],
                r[1],
                r[2],
                Destination(r[3]),
                r[4],
                r[5],
                r[6],
                r[7],
                r[8],
                r[9],
                r[10],
                int(r[11]),
                r[12],
                bool(r[13]),
            )
            for r in rows
        ]

    def _lease(self) -> dict[str, Any]:
        return {"me": self.owner, "lease": self.lease_s}

    async def mark_outbox_done(self, ids: Sequence[int]) -> None:
        if ids:
            await self._execute(
                "UPDATE outbox SET done_at = %s WHERE id = ANY(%s) AND done_at IS NULL",
                (_now(), list(ids)),
            )

    async def deliver(self, organ_id: str, message_id: str) -> bool:
        rows = await self._execute(
            "INSERT INTO mailbox (organ_id, message_id, delivered_at) VALUES (%s, %s, %s) "
            "ON CONFLICT (organ_id, message_id) DO NOTHING RETURNING organ_id",
            (organ_id, message_id, _now()),
        )
        return bool(rows)

    async def finish_outbox(
        self,
        deliveries: Sequence[tuple[str, str]],
        done: Sequence[int],
        failed: Sequence[tuple[int, str]] = (),
        events: Sequence[Event] = (),
    ) -> None:
        if not deliveries and not done and not failed and not events:
            return
        now = _now()
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                if deliveries:
                    await _lock_mailboxes(cur, sorted({organ for organ, _ in deliveries}))
                    await cur.execute(
                        _DELIVER,
                        {
                            "organs": [organ for organ, _ in deliveries],
                            "messages": [message for _, message in deliveries],
                            "now": now,
                        },
                    )
                    revoked = await cur.fetchall()
                    if revoked:  # undone, all of it: the next round sees the tombstones
                        raise TransientFault(
                            f"revoked meanwhile, by another instance: {len(revoked)} "
                            "cop(ies) in this batch; it is taken again"
                        )
                if done:
                    await cur.execute(
                        "UPDATE outbox SET done_at = %s WHERE id = ANY(%s) AND done_at IS NULL",
                        (now, list(done)),
                    )
                if failed:
                    await cur.executemany(
                        "UPDATE outbox SET done_at = %s, failure = %s "
                        "WHERE id = %s AND done_at IS NULL",
                        [(now, reason, i) for i, reason in failed],
                    )
                await evidence_postgres.append(conn, self.chain, events)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def failed_outbox(self, limit: int = 100) -> Sequence[FailedRow]:
        rows = await self._execute(
            "SELECT id, message_id, target, failure, done_at FROM outbox "
            "WHERE failure IS NOT NULL ORDER BY done_at DESC, id DESC LIMIT %s",
            (limit,),
        )
        return [FailedRow(*r) for r in rows]

    async def mailbox(
        self,
        organ_id: str,
        *,
        unfetched_only: bool,
        limit: int,
        offset: int = 0,
        max_size: int | None = None,
    ) -> Sequence[MailboxEntry]:
        rows = await self._execute(
            "SELECT m.organ_id, m.message_id, p.digest, p.kind, p.sender, p.document_id, "
            "m.delivered_at, m.fetched_at, p.size FROM mailbox m "
            "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = %s "
            "AND (NOT %s OR m.fetched_at IS NULL) AND m.withdrawn_at IS NULL "
            "AND (%s::bigint IS NULL OR p.size <= %s) "
            "ORDER BY m.delivered_at, m.message_id LIMIT %s OFFSET %s",
            (organ_id, unfetched_only, max_size, max_size, limit, offset),
        )
        return [MailboxEntry(*r) for r in rows]

    async def unpushed(self, organ_id: str, limit: int) -> Sequence[MailboxEntry]:
        """The agency's mail not pushed yet that no other instance holds, claimed and
        leased as ``pending_outbox`` does."""
        rows = await self._execute(
            _CLAIM_PUSH, {"organ": organ_id, "limit": limit, **self._lease()}
        )
        return [MailboxEntry(*r) for r in rows]

    async def mark_pushed(self, organ_id: str, message_ids: Sequence[str]) -> None:
        if message_ids:
            await self._execute(
                "UPDATE mailbox SET pushed_at = %s WHERE organ_id = %s AND message_id = ANY(%s)",
                (_now(), organ_id, list(message_ids)),
            )

    async def mailbox_entry(self, organ_id: str, message_id: str) -> MailboxEntry | None:
        rows = await self._execute(
            "SELECT m.organ_id, m.message_id, p.digest, p.kind, p.sender, p.document_id, "
            "m.delivered_at, m.fetched_at, p.size FROM mailbox m "
            "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = %s "
            "AND m.message_id = %s AND m.withdrawn_at IS NULL",
            (organ_id, message_id),
        )
        return MailboxEntry(*rows[0]) if rows else None

    async def mark_fetched(
        self, organ_id: str, message_ids: Sequence[str], events: Sequence[Event] = ()
    ) -> int:
        event_of = {e.message_id: e for e in events}
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                rows = await (
                    await conn.execute(
                        "UPDATE mailbox SET fetched_at = %s WHERE organ_id = %s "
                        "AND message_id = ANY(%s) AND fetched_at IS NULL "
                        "AND withdrawn_at IS NULL RETURNING message_id",
                        (_now(), organ_id, list(message_ids)),
                    )
                ).fetchall()
                marked = sorted(r[0] for r in rows)
                await evidence_postgres.append(
                    conn, self.chain, [event_of[m] for m in marked if m in event_of]
                )
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc
        return len(marked)

    async def withdraw(
        self, organ_id: str, document_id: str, sender: str, by_message_id: str, at: datetime
    ) -> Sequence[Withdrawal]:
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                # alone at this mailbox: a delivery claimed before the tombstone below
                # is either in (and withdrawn here) or sees the tombstone (and is undone)
                await _lock_mailboxes(conn, [organ_id], alone=True)
                rows = await (
                    await conn.execute(
                        "SELECT m.message_id, m.fetched_at, m.withdrawn_at, p.origin "
                        "FROM mailbox m JOIN packages p ON p.message_id = m.message_id "
                        "WHERE m.organ_id = %s AND p.document_id = %s AND p.sender = %s "
                        "AND p.business != 1 AND m.message_id != %s "
                        "ORDER BY m.delivered_at, m.message_id FOR UPDATE OF m",
                        (organ_id, document_id, sender, by_message_id),
                    )
                ).fetchall()
                found = []
                for message_id, fetched, withdrawn, origin in rows:
                    if fetched is not None and withdrawn is None:
                        found.append(Withdrawal(message_id, "already fetched", origin))
                        continue
                    await conn.execute(
                        "UPDATE mailbox SET withdrawn_at = coalesce(withdrawn_at, %s) "
                        "WHERE organ_id = %s AND message_id = %s",
                        (at, organ_id, message_id),
                    )
                    found.append(Withdrawal(message_id, "withdrawn", origin))
                await conn.execute(
                    "INSERT INTO tombstones (document_id, sender, organ_id, message_id, at) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (document_id, sender, organ_id, by_message_id, at),
                )
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc
        return found

    # --- evidence -------------------------------------------------------------------

    async def record_events(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                return await evidence_postgres.append(conn, self.chain, events)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def pending_reports(
        self, limit: int, *, skip_to: Collection[str] = ()
    ) -> Sequence[tuple[int, Event]]:
        """Reports of every chain (an instance gone leaves its own to the others), each
        claimed and leased as ``pending_outbox`` does."""
        rows = await self._execute(
            _CLAIM_REPORTS, {"skip": sorted(skip_to), "limit": limit, **self._lease()}
        )
        return [(r[0], evidence_postgres.entry_of(r[1:]).event) for r in rows]

    async def mark_reported(self, ids: Sequence[int]) -> None:
        if ids:
            await self._execute(
                "UPDATE evidence SET reported_at = %s WHERE id = ANY(%s)", (_now(), list(ids))
            )

    async def events_about(
        self, *, message_id: str | None = None, document_id: str | None = None
    ) -> Sequence[Event]:
        rows = await self._execute(
            "SELECT chain, seq, prev, hash, record, report_to FROM evidence "
            "WHERE message_id = %s OR document_id = %s ORDER BY id",
            (message_id, document_id),
        )
        return [evidence_postgres.entry_of(r).event for r in rows]

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
        query, args = evidence_postgres.search(
            chain=chain, after=after, limit=limit, party=party, since=since, until=until
        )
        return [evidence_postgres.entry_of(r) for r in await self._execute(query, args)]

    async def chain_heads(self) -> Mapping[str, tuple[int, str]]:
        rows = await self._execute("SELECT chain, seq, hash FROM chain_heads WHERE seq > 0")
        return {r[0]: (int(r[1]), str(r[2])) for r in rows}

    async def trail(self, message_id: str) -> Trail | None:
        head = await self._execute(
            "SELECT sender, document_id, kind, level, source, received_at FROM packages "
            "WHERE message_id = %s",
            (message_id,),
        )
        if not head:
            return None
        rows = await self._execute(
            "SELECT o.destination, o.target, o.created_at, o.done_at, o.failure, "
            "m.delivered_at, m.fetched_at FROM outbox o LEFT JOIN mailbox m "
            "ON o.destination = 'mailbox' AND m.organ_id = o.target "
            "AND m.message_id = o.message_id WHERE o.message_id = %s ORDER BY o.id",
            (message_id,),
        )
        steps = []
        for destination, target, created, done, failure, delivered, fetched in rows:
            state, at, reason = trail_state(
                Destination(destination), created, done, failure, delivered, fetched
            )
            steps.append(TrailStep(Destination(destination), target, state, at, reason))
        sender, document_id, kind, level, source, received_at = head[0]
        return Trail(
            message_id, sender, document_id, kind, level, source, received_at, tuple(steps)
        )

    async def package_bytes(self, digest: str) -> bytes:
        rows = await self._execute("SELECT data FROM blobs WHERE digest = %s", (digest,))
        if not rows:
            raise KeyError(digest)
        return bytes(rows[0][0])

    def spool_folder(self) -> Path | None:
        return None  # bytes live in the database: no package above the inline cap

    async def package_file(self, digest: str) -> Path | None:
        return None  # the bytes live in the database (blobs): read them with package_bytes

    async def envelope(self, message_id: str) -> bytes:
        rows = await self._execute(
            "SELECT envelope FROM packages WHERE message_id = %s", (message_id,)
        )
        if not rows:
            raise KeyError(message_id)
        return bytes(rows[0][0])

    async def add_dead_letter(
        self, data: bytes, source: str, reason: str, attempts: int
    ) -> tuple[int, bool]:
        digest = hashlib.sha256(data).hexdigest()
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (digest,))
                held = await (
                    await conn.execute(
                        "SELECT id FROM dead_letters WHERE digest = %s AND replayed_at IS NULL",
                        (digest,),
                    )
                ).fetchone()
                if held is not None:
                    return int(held[0]), False
                await conn.execute(
                    "INSERT INTO blobs (digest, data) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (digest, data),
                )
                row = await (
                    await conn.execute(
                        "INSERT INTO dead_letters (digest, source, reason, attempts, dead_at) "
                        "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                        (digest, source, reason, attempts, _now()),
                    )
                ).fetchone()
                assert row is not None
                return int(row[0]), True
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def dead_letters(self, *, include_replayed: bool = False) -> Sequence[DeadLetter]:
        rows = await self._execute(
            "SELECT id, digest, source, reason, attempts, dead_at, replayed_at, purged_at "
            "FROM dead_letters WHERE %s OR (replayed_at IS NULL AND purged_at IS NULL) "
            "ORDER BY id",
            (include_replayed,),
        )
        return [DeadLetter(*r) for r in rows]

    async def purge_dead_letter(
        self, dead_letter_id: int, at: datetime, events: Sequence[Event]
    ) -> bool:
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                return await ops_postgres.purge(conn, self.chain, dead_letter_id, at, events)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def operations(self, since: datetime) -> Operations:
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                return await ops_postgres.operations(conn, since)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def latest_from(self, organs: Collection[str]) -> Mapping[str, str]:
        await self._open()
        try:
            async with self._pool.connection() as conn:
                return await ops_postgres.latest_from(conn, organs)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def events_of_kind(self, kind: str, since: datetime, limit: int = 500) -> Sequence[Event]:
        await self._open()
        try:
            async with self._pool.connection() as conn:
                return await ops_postgres.events_of_kind(conn, kind, since, limit)
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def dead_letter_bytes(self, dead_letter_id: int) -> bytes:
        rows = await self._execute(
            "SELECT digest FROM dead_letters WHERE id = %s", (dead_letter_id,)
        )
        if not rows:
            raise KeyError(dead_letter_id)
        return await self.package_bytes(rows[0][0])

    async def mark_replayed(self, dead_letter_id: int, replayed: bool = True) -> None:
        await self._execute(
            "UPDATE dead_letters SET replayed_at = %s WHERE id = %s",
            (_now() if replayed else None, dead_letter_id),
        )

    async def claim_key(self, caller: str, key: str, digest: str, at: datetime) -> str | None:
        rows = await self._execute(
            "WITH claimed AS (INSERT INTO idempotency (caller, key, digest, created_at) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING digest) "
            "SELECT digest FROM claimed UNION ALL "
            "SELECT digest FROM idempotency WHERE caller = %s AND key = %s",
            (caller, key, digest, at, caller, key),
        )
        bound = str(rows[0][0])
        return None if bound == digest else bound

    # --- quarantine and upstream ids (adapters/bridge_postgres.py) ------------------------

    async def quarantined(self, *, decided: bool = False) -> Sequence[HeldPackage]:
        where = "" if decided else "WHERE q.decided_at IS NULL "
        rows = await self._execute(
            bridge_postgres.HELD + where + "ORDER BY q.held_at, q.message_id"
        )
        return [bridge_postgres.held(r) for r in rows]

    async def held_package(self, message_id: str) -> HeldPackage | None:
        rows = await self._execute(bridge_postgres.HELD + "WHERE q.message_id = %s", (message_id,))
        return bridge_postgres.held(rows[0]) if rows else None

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
        await self._open()
        try:
            async with self._pool.connection() as conn, conn.transaction():
                decided = await bridge_postgres.decide(
                    conn, message_id, decision, by, at, note, outbox
                )
                if decided:
                    await evidence_postgres.append(conn, self.chain, events)
                return decided
        except psycopg.OperationalError as exc:
            raise self._fault(exc) from exc

    async def link_upstream(
        self, upstream: str, direction: str, doc_id: str, message_id: str, at: datetime
    ) -> str:
        await self._execute(bridge_postgres.LINK, (upstream, direction, doc_id, message_id, at))
        rows = await self._execute(bridge_postgres.MESSAGE_OF, (upstream, direction, doc_id))
        return str(rows[0][0])

    async def upstream_message(self, upstream: str, direction: str, doc_id: str) -> str | None:
        rows = await self._execute(bridge_postgres.MESSAGE_OF, (upstream, direction, doc_id))
        return str(rows[0][0]) if rows else None

    async def upstream_links(self, message_id: str) -> Sequence[UpstreamLink]:
        rows = await self._execute(bridge_postgres.LINKS, (message_id,))
        return [bridge_postgres.upstream_link(r) for r in rows]

    async def prune_dedup(self, older_than: datetime) -> int:
        await self._execute("DELETE FROM idempotency WHERE created_at < %s", (older_than,))
        rows = await self._execute(
            "DELETE FROM dedup WHERE created_at < %s RETURNING key", (older_than,)
        )
        return len(rows)

    async def collect_garbage(self, grace_seconds: float = 3600) -> int:
        """Blobs live in the intake transaction, so none is orphaned; nothing to collect."""
        del grace_seconds
        return 0
