"""The operator's queries in PostgreSQL (``GET /status``), and the purge of a dead letter
written with its evidence: the same answers as adapters/ops_sqlite.py."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from adapters import evidence_postgres
from exchange.evidence import Event
from exchange.store import Backlog, Operations, PendingMail

MIGRATION = """
ALTER TABLE dead_letters ADD COLUMN purged_at TIMESTAMPTZ;
CREATE INDEX evidence_kind_at ON evidence (kind, at);
CREATE INDEX packages_sender ON packages (sender, received_at);
"""

Conn = AsyncConnection[Any]


async def _rows(conn: Conn, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(query.encode(), params)
    return await cursor.fetchall()


async def operations(conn: Conn, since: datetime) -> Operations:
    backlog = [
        Backlog(str(r[0]), int(r[1]), r[2])
        for r in await _rows(
            conn,
            "SELECT target, count(*), min(created_at) FROM outbox "
            "WHERE done_at IS NULL AND destination != 'mailbox' GROUP BY target ORDER BY target",
        )
    ]
    mail = [
        PendingMail(str(r[0]), int(r[1]), r[2])
        for r in await _rows(
            conn,
            "SELECT organ_id, count(*), min(delivered_at) FROM mailbox "
            "WHERE fetched_at IS NULL AND withdrawn_at IS NULL "
            "GROUP BY organ_id ORDER BY count(*) DESC, organ_id LIMIT 20",
        )
    ]
    events = {
        str(r[0]): int(r[1])
        for r in await _rows(
            conn, "SELECT kind, count(*) FROM evidence WHERE at >= %s GROUP BY kind", (since,)
        )
    }
    per_minute = [
        (r[0], str(r[1]), int(r[2]))
        for r in await _rows(
            conn,
            "SELECT date_trunc('minute', at), kind, count(*) FROM evidence "
            "WHERE at >= %s AND kind IN ('accepted', 'received', 'delivered') "
            "GROUP BY 1, 2 ORDER BY 1",
            (since,),
        )
    ]
    ((dead,),) = await _rows(
        conn,
        "SELECT count(*) FROM dead_letters WHERE replayed_at IS NULL AND purged_at IS NULL",
    )
    ((held,),) = await _rows(conn, "SELECT count(*) FROM quarantine WHERE decided_at IS NULL")
    return Operations(backlog, mail, events, per_minute, int(dead), int(held))


async def latest_from(conn: Conn, organs: Collection[str]) -> dict[str, str]:
    rows = await _rows(
        conn,
        "SELECT DISTINCT ON (sender) sender, digest FROM packages "
        "WHERE sender = ANY(%s) AND kind = 'edoc' ORDER BY sender, received_at DESC",
        (sorted(organs),),
    )
    return {str(r[0]): str(r[1]) for r in rows}


async def events_of_kind(conn: Conn, kind: str, since: datetime, limit: int) -> list[Event]:
    rows = await _rows(
        conn,
        "SELECT record, report_to FROM evidence WHERE kind = %s AND at >= %s "
        "ORDER BY at DESC, id DESC LIMIT %s",
        (kind, since, limit),
    )
    return [Event.from_record(json.loads(r[0]), r[1]) for r in rows]


async def purge(
    conn: Conn, chain: str, dead_letter_id: int, at: datetime, events: Sequence[Event]
) -> bool:
    """Inside the caller's transaction."""
    cursor = await conn.execute(
        "UPDATE dead_letters SET purged_at = %s "
        "WHERE id = %s AND replayed_at IS NULL AND purged_at IS NULL",
        (at, dead_letter_id),
    )
    if cursor.rowcount:
        await evidence_postgres.append(conn, chain, events)
    return bool(cursor.rowcount)
