"""The evidence log in SQLite: appended inside the caller's transaction.

The chain head is read and moved in the same ``BEGIN IMMEDIATE`` transaction as the
work the events record, so SQLite's one writer keeps the chain in order.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from exchange.envelope import canonical
from exchange.evidence import GENESIS, Event, LogEntry, chain_next

MIGRATION = """
ALTER TABLE packages ADD COLUMN origin TEXT;
ALTER TABLE packages ADD COLUMN business INTEGER NOT NULL DEFAULT 0;
ALTER TABLE packages ADD COLUMN about TEXT;
ALTER TABLE mailbox ADD COLUMN withdrawn_at TEXT;
CREATE TABLE evidence (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    chain       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    key         TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    at          TEXT NOT NULL,
    message_id  TEXT,
    document_id TEXT,
    sender      TEXT,
    party       TEXT,
    record      TEXT NOT NULL,
    prev        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    report_to   TEXT,
    reported_at TEXT,
    UNIQUE (chain, seq)
);
CREATE INDEX evidence_message ON evidence (message_id);
CREATE INDEX evidence_document ON evidence (document_id);
CREATE INDEX evidence_sender ON evidence (sender, at);
CREATE INDEX evidence_party ON evidence (party, at);
CREATE INDEX evidence_reports ON evidence (id) WHERE report_to IS NOT NULL AND reported_at IS NULL;
CREATE TABLE chain_heads (
    chain TEXT PRIMARY KEY,
    seq   INTEGER NOT NULL,
    hash  TEXT NOT NULL
);
CREATE TABLE tombstones (
    document_id TEXT NOT NULL,
    sender      TEXT NOT NULL,
    organ_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (document_id, sender, organ_id)
)
"""

COLUMNS = "chain, seq, prev, hash, record, report_to"


def utc(at: datetime) -> str:
    """Times as UTC ISO text, so that text order is time order."""
    return at.astimezone(UTC).isoformat()


def append(db: sqlite3.Connection, chain: str, events: Sequence[Event]) -> int:
    """Append the events not recorded before; the caller holds the write transaction."""
    if not events:
        return 0
    row = db.execute("SELECT seq, hash FROM chain_heads WHERE chain = ?", (chain,)).fetchone()
    head: tuple[int, str] = (int(row[0]), str(row[1])) if row else (0, GENESIS)
    added = 0
    for event in events:
        entry = chain_next(chain, head, event)
        cursor = db.execute(
            "INSERT INTO evidence (chain, seq, key, kind, at, message_id, document_id, sender, "
            "party, record, prev, hash, report_to) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (key) DO NOTHING",
            (
                chain,
                entry.seq,
                event.key,
                event.kind.value,
                utc(event.at),
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
        if cursor.rowcount == 1:
            head = (entry.seq, entry.hash)
            added += 1
    if added:
        db.execute(
            "INSERT INTO chain_heads (chain, seq, hash) VALUES (?, ?, ?) "
            "ON CONFLICT (chain) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            (chain, *head),
        )
    return added


def entry_of(row: Any) -> LogEntry:
    chain, seq, prev, digest, record, report_to = row
    return LogEntry(chain, int(seq), Event.from_record(json.loads(record), report_to), prev, digest)


def about(db: sqlite3.Connection, message_id: str | None, document_id: str | None) -> list[Event]:
    rows = db.execute(
        "SELECT chain, seq, prev, hash, record, report_to FROM evidence "
        "WHERE message_id = ? OR document_id = ? ORDER BY id",
        (message_id, document_id),
    ).fetchall()
    return [entry_of(r).event for r in rows]


def entries(
    db: sqlite3.Connection,
    *,
    chain: str | None,
    after: int,
    limit: int,
    party: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[LogEntry]:
    where: list[str] = ["1 = 1"]
    args: list[object] = []
    if chain is not None:
        where.append("chain = ? AND seq > ?")
        args += [chain, after]
    if party is not None:
        # a delivery names its recipients in its record, not in ``party``
        where.append("(sender = ? OR party = ? OR record LIKE ?)")
        args += [party, party, f'%"{party}"%']
    if since is not None:
        where.append("at >= ?")
        args.append(utc(since))
    if until is not None:
        where.append("at < ?")
        args.append(utc(until))
    rows = db.execute(
        f"SELECT {COLUMNS} FROM evidence WHERE {' AND '.join(where)} "  # noqa: S608
        "ORDER BY chain, seq LIMIT ?",
        (*args, limit),
    ).fetchall()
    return [entry_of(r) for r in rows]
