"""The evidence log in PostgreSQL: appended inside the caller's transaction.

Each service instance appends to its own chain; the chain's head row is locked
(``FOR UPDATE``) for the rest of the transaction, so appends to one chain are in order
and instances never wait on each other's chains.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from exchange.envelope import canonical
from exchange.evidence import GENESIS, Event, LogEntry, chain_next

MIGRATION = """
ALTER TABLE packages ADD COLUMN origin TEXT;
ALTER TABLE packages ADD COLUMN business INTEGER NOT NULL DEFAULT 0;
ALTER TABLE packages ADD COLUMN about TEXT;
ALTER TABLE mailbox ADD COLUMN withdrawn_at TIMESTAMPTZ;
CREATE TABLE evidence (
    id          BIGSERIAL PRIMARY KEY,
    chain       TEXT NOT NULL,
    seq         BIGINT NOT NULL,
    key         TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    message_id  TEXT,
    document_id TEXT,
    sender      TEXT,
    party       TEXT,
    record      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    report_to   TEXT,
    reported_at TIMESTAMPTZ,
    UNIQUE (chain, seq)
);
CREATE INDEX evidence_message ON evidence (message_id);
CREATE INDEX evidence_document ON evidence (document_id);
CREATE INDEX evidence_sender ON evidence (sender, at);
CREATE INDEX evidence_party ON evidence (party, at);
CREATE INDEX evidence_reports ON evidence (id) WHERE report_to IS NOT NULL AND reported_at IS NULL;
CREATE TABLE chain_heads (
    chain TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TABLE tombstones (
    document_id TEXT NOT NULL,
    sender      TEXT NOT NULL,
    organ_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (document_id, sender, organ_id)
);
"""

COLUMNS = "chain, seq, prev, hash, record, report_to"


async def append(conn: psycopg.AsyncConnection[Any], chain: str, events: Sequence[Event]) -> int:
    """Append the events not recorded before; the caller holds the transaction."""
    if not events:
        return 0
    await conn.execute(
        "INSERT INTO chain_heads (chain, seq, hash) VALUES (%s, 0, %s) ON CONFLICT DO NOTHING",
        (chain, GENESIS),
    )
    row = await (
        await conn.execute(
            "SELECT seq, hash FROM chain_heads WHERE chain = %s FOR UPDATE", (chain,)
        )
    ).fetchone()
    assert row is not None
    head: tuple[int, str] = (int(row[0]), str(row[1]))
    added = 0
    for event in events:
        entry = chain_next(chain, head, event)
        inserted = await (
            await conn.execute(
                "INSERT INTO evidence (chain, seq, key, kind, at, message_id, document_id, "
                "sender, party, record, prev, hash, report_to) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (key) DO NOTHING RETURNING id",
                (
                    chain,
                    entry.seq,
                    event.key,
                    event.kind.value,
                    event.at,
                    event.message_id,
                    event.document_id,
                    event.sender,
                    event.party,
                    canonical(event.record()).decode(),
                    entry.prev,
                    entry.hash,
                    event.report_to,
                ),
            )
        ).fetchone()
        if inserted is not None:
            head = (entry.seq, entry.hash)
            added += 1
    if added:
        await conn.execute(
            "UPDATE chain_heads SET seq = %s, hash = %s WHERE chain = %s", (*head, chain)
        )
    return added


def entry_of(row: Sequence[Any]) -> LogEntry:
    chain, seq, prev, digest, record, report_to = row
    return LogEntry(chain, int(seq), Event.from_record(json.loads(record), report_to), prev, digest)


def search(
    *,
    chain: str | None,
    after: int,
    limit: int,
    party: str | None,
    since: datetime | None,
    until: datetime | None,
) -> tuple[str, list[Any]]:
    where: list[str] = ["TRUE"]
    args: list[object] = []
    if chain is not None:
        where.append("chain = %s AND seq > %s")
        args += [chain, after]
    if party is not None:
        # a delivery names its recipients in its record, not in ``party``
        where.append("(sender = %s OR party = %s OR record LIKE %s)")
        args += [party, party, f'%"{party}"%']
    if since is not None:
        where.append("at >= %s")
        args.append(since)
    if until is not None:
        where.append("at < %s")
        args.append(until)
    query = (
        f"SELECT {COLUMNS} FROM evidence WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY chain, seq LIMIT %s"
    )
    return query, [*args, limit]
