"""Quarantine and upstream ids in PostgreSQL (docs/bridge.md): the counterpart of
adapters/bridge_sqlite.py, called inside the store's transactions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from exchange.store import HeldPackage, OutboxItem, UpstreamLink

MIGRATION = """
CREATE TABLE quarantine (
    message_id  TEXT PRIMARY KEY REFERENCES packages (message_id),
    reason      TEXT NOT NULL,
    held_at     TIMESTAMPTZ NOT NULL,
    decision    TEXT,
    decided_by  TEXT,
    decided_at  TIMESTAMPTZ,
    note        TEXT
);
CREATE INDEX quarantine_open ON quarantine (held_at) WHERE decided_at IS NULL;
CREATE TABLE upstream_ids (
    upstream    TEXT NOT NULL,
    direction   TEXT NOT NULL,
    doc_id      TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (upstream, direction, doc_id)
);
CREATE INDEX upstream_ids_message ON upstream_ids (message_id)
"""

HELD = (
    "SELECT q.message_id, p.sender, p.document_id, p.kind, p.source, q.reason, q.held_at, "
    "q.decision, q.decided_by, q.decided_at, q.note "
    "FROM quarantine q JOIN packages p ON p.message_id = q.message_id "
)
LINKS = (
    "SELECT upstream, direction, doc_id, message_id, at FROM upstream_ids "
    "WHERE message_id = %s ORDER BY at, upstream, direction"
)
MESSAGE_OF = (
    "SELECT message_id FROM upstream_ids WHERE upstream = %s AND direction = %s AND doc_id = %s"
)
LINK = (
    "INSERT INTO upstream_ids (upstream, direction, doc_id, message_id, at) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def held(row: Sequence[Any]) -> HeldPackage:
    return HeldPackage(*row)


def upstream_link(row: Sequence[Any]) -> UpstreamLink:
    return UpstreamLink(*row)


async def hold(conn: AsyncConnection[Any], message_id: str, reason: str, at: datetime) -> None:
    await conn.execute(
        "INSERT INTO quarantine (message_id, reason, held_at) VALUES (%s, %s, %s)",
        (message_id, reason, at),
    )


async def decide(
    conn: AsyncConnection[Any],
    message_id: str,
    decision: str,
    by: str,
    at: datetime,
    note: str | None,
    outbox: Sequence[OutboxItem],
) -> bool:
    cursor = await conn.execute(
        "UPDATE quarantine SET decision = %s, decided_by = %s, decided_at = %s, note = %s "
        "WHERE message_id = %s AND decided_at IS NULL",
        (decision, by, at, note, message_id),
    )
    if cursor.rowcount != 1:
        return False
    if outbox:
        async with conn.cursor() as many:
            await many.executemany(
                "INSERT INTO outbox (message_id, destination, target, created_at, done_at, "
                "failure) VALUES (%s, %s, %s, %s, %s, %s)",
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
