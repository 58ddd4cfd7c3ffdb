"""Quarantine and upstream ids in SQLite (docs/bridge.md): called inside the store's
transactions, so a held package, its decision and its evidence are written together."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from exchange.store import HeldPackage, OutboxItem, UpstreamLink

MIGRATION = """
CREATE TABLE quarantine (
    message_id  TEXT PRIMARY KEY REFERENCES packages (message_id),
    reason      TEXT NOT NULL,
    held_at     TEXT NOT NULL,
    decision    TEXT,
    decided_by  TEXT,
    decided_at  TEXT,
    note        TEXT
);
CREATE INDEX quarantine_open ON quarantine (held_at) WHERE decided_at IS NULL;
CREATE TABLE upstream_ids (
    upstream    TEXT NOT NULL,
    direction   TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    at          TEXT NOT NULL,
    PRIMARY KEY (upstream, direction, doc_id)
);
CREATE INDEX upstream_ids_message ON upstream_ids (message_id)
"""

_HELD = (
    "SELECT q.message_id, p.sender, p.document_id, p.kind, p.source, q.reason, q.held_at, "
    "q.decision, q.decided_by, q.decided_at, q.note "
    "FROM quarantine q JOIN packages p ON p.message_id = q.message_id "
)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _held(row: tuple[object, ...]) -> HeldPackage:
    return HeldPackage(
        message_id=str(row[0]),
        sender=str(row[1]),
        document_id=None if row[2] is None else str(row[2]),
        kind=str(row[3]),
        source=str(row[4]),
        reason=str(row[5]),
        held_at=datetime.fromisoformat(str(row[6])),
        decision=None if row[7] is None else str(row[7]),
        decided_by=None if row[8] is None else str(row[8]),
        decided_at=_time(None if row[9] is None else str(row[9])),
        note=None if row[10] is None else str(row[10]),
    )


def hold(db: sqlite3.Connection, message_id: str, reason: str, at: str) -> None:
    db.execute(
        "INSERT INTO quarantine (message_id, reason, held_at) VALUES (?, ?, ?)",
        (message_id, reason, at),
    )


def quarantined(db: sqlite3.Connection, decided: bool) -> list[HeldPackage]:
    where = "" if decided else "WHERE q.decided_at IS NULL "
    return [_held(r) for r in db.execute(_HELD + where + "ORDER BY q.held_at, q.message_id")]


def held_package(db: sqlite3.Connection, message_id: str) -> HeldPackage | None:
    row = db.execute(_HELD + "WHERE q.message_id = ?", (message_id,)).fetchone()
    return _held(row) if row else None


def decide(
    db: sqlite3.Connection,
    message_id: str,
    decision: str,
    by: str,
    at: str,
    note: str | None,
    outbox: Sequence[OutboxItem],
) -> bool:
    """Inside the caller's transaction: the decision, and the release's outbox rows."""
    cursor = db.execute(
        "UPDATE quarantine SET decision = ?, decided_by = ?, decided_at = ?, note = ? "
        "WHERE message_id = ? AND decided_at IS NULL",
        (decision, by, at, note, message_id),
    )
    if cursor.rowcount != 1:
        return False
    db.executemany(
        "INSERT INTO outbox (message_id, destination, target, created_at, done_at, failure) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                message_id,
                item.destination.value,
                item.target,
                at,
                at if item.failure else None,
                item.failure,
            )
            for item in outbox
        ],
    )
    return True


def link(
    db: sqlite3.Connection, upstream: str, direction: str, doc_id: str, message_id: str, at: str
) -> str:
    db.execute(
        "INSERT INTO upstream_ids (upstream, direction, doc_id, message_id, at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (upstream, direction, doc_id, message_id, at),
    )
    row = db.execute(
        "SELECT message_id FROM upstream_ids WHERE upstream = ? AND direction = ? AND doc_id = ?",
        (upstream, direction, doc_id),
    ).fetchone()
    return str(row[0])


def message_of(db: sqlite3.Connection, upstream: str, direction: str, doc_id: str) -> str | None:
    row = db.execute(
        "SELECT message_id FROM upstream_ids WHERE upstream = ? AND direction = ? AND doc_id = ?",
        (upstream, direction, doc_id),
    ).fetchone()
    return None if row is None else str(row[0])


def links_of(db: sqlite3.Connection, message_id: str) -> list[UpstreamLink]:
    return [
        UpstreamLink(str(r[0]), str(r[1]), str(r[2]), str(r[3]), datetime.fromisoformat(str(r[4])))
        for r in db.execute(
            "SELECT upstream, direction, doc_id, message_id, at FROM upstream_ids "
            "WHERE message_id = ? ORDER BY at, upstream, direction",
            (message_id,),
        )
    ]
