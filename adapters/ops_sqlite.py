"""The operator's queries in SQLite (``GET /status``): counts read in one transaction, and
the purge of a dead letter written with its evidence."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime

from adapters import evidence_sqlite
from exchange.evidence import Event
from exchange.store import Backlog, Operations, PendingMail

MIGRATION = """
ALTER TABLE dead_letters ADD COLUMN purged_at TEXT;
CREATE INDEX evidence_kind_at ON evidence (kind, at);
CREATE INDEX packages_sender ON packages (sender, received_at)
"""


def _time(value: object) -> datetime | None:
    return datetime.fromisoformat(str(value)) if value else None


def operations(db: sqlite3.Connection, since: datetime) -> Operations:
    after = evidence_sqlite.utc(since)
    backlog = [
        Backlog(str(r[0]), int(r[1]), _time(r[2]))
        for r in db.execute(
            "SELECT target, count(*), min(created_at) FROM outbox "
            "WHERE done_at IS NULL AND destination != 'mailbox' GROUP BY target ORDER BY target"
        )
    ]
    mail = [
        PendingMail(str(r[0]), int(r[1]), _time(r[2]))
        for r in db.execute(
            "SELECT organ_id, count(*), min(delivered_at) FROM mailbox "
            "WHERE fetched_at IS NULL AND withdrawn_at IS NULL "
            "GROUP BY organ_id ORDER BY count(*) DESC, organ_id LIMIT 20"
        )
    ]
    events = {
        str(r[0]): int(r[1])
        for r in db.execute(
            "SELECT kind, count(*) FROM evidence WHERE at >= ? GROUP BY kind", (after,)
        )
    }
    per_minute = [
        (datetime.fromisoformat(str(r[0]) + ":00+00:00"), str(r[1]), int(r[2]))
        for r in db.execute(
            "SELECT substr(at, 1, 16), kind, count(*) FROM evidence "
            "WHERE at >= ? AND kind IN ('accepted', 'received', 'delivered') "
            "GROUP BY 1, 2 ORDER BY 1",
            (after,),
        )
    ]
    (dead,) = db.execute(
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL AND purged_at IS NULL"
    ).fetchone()
    (held,) = db.execute("SELECT count(*) FROM quarantine WHERE decided_at IS NULL").fetchone()
    return Operations(backlog, mail, events, per_minute, int(dead), int(held))


def latest_from(db: sqlite3.Connection, organs: Collection[str]) -> dict[str, str]:
    found = {}
    for organ in sorted(organs):
        row = db.execute(
            "SELECT digest FROM packages WHERE sender = ? AND kind = 'edoc' "
            "ORDER BY received_at DESC LIMIT 1",
            (organ,),
        ).fetchone()
        if row is not None:
            found[organ] = str(row[0])
    return found


def events_of_kind(db: sqlite3.Connection, kind: str, since: datetime, limit: int) -> list[Event]:
    return [
        Event.from_record(json.loads(r[0]), r[1])
        for r in db.execute(
            "SELECT record, report_to FROM evidence WHERE kind = ? AND at >= ? "
            "ORDER BY at DESC, id DESC LIMIT ?",
            (kind, evidence_sqlite.utc(since), limit),
        )
    ]


def purge(
    db: sqlite3.Connection, chain: str, dead_letter_id: int, at: datetime, events: Sequence[Event]
) -> bool:
    """Inside the caller's write transaction."""
    purged = db.execute(
        "UPDATE dead_letters SET purged_at = ? "
        "WHERE id = ? AND replayed_at IS NULL AND purged_at IS NULL",
        (evidence_sqlite.utc(at), dead_letter_id),
    ).rowcount
    if purged:
        evidence_sqlite.append(db, chain, events)
    return bool(purged)
