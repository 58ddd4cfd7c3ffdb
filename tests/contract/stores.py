"""Store backends for the contract suite: the embedded SQLite store and PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from exchange.model import Business, BusinessType, Kind, Level, Organ, Package
from exchange.store import Destination, Intake, OutboxItem

PG_DSN = os.environ.get("LIENTHONG_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgres"]


def open_store(backend: str, where: str) -> SqliteStore | PostgresStore:
    """``where`` is a folder for SQLite and a schema name for PostgreSQL."""
    if backend == "sqlite":
        return SqliteStore(Path(where))
    return PostgresStore(PG_DSN, schema=where, pool_size=2)


def new_location(backend: str, tmp_path: Path) -> str:
    return str(tmp_path / "store") if backend == "sqlite" else f"t_{uuid.uuid4().hex[:12]}"


def drop_location(backend: str, where: str) -> None:
    if backend == "postgres":
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {where} CASCADE".encode())


def package(
    data: bytes,
    *,
    sender: str = "000.00.00.G22",
    document_id: str | None = "000.00.00.G22,2026/11/20,125/UBND-VP",
    business: BusinessType = BusinessType.NEW,
    kind: Kind = Kind.EDOC,
) -> Package:
    return Package(
        kind=kind,
        digest=hashlib.sha256(data).hexdigest(),
        size=len(data),
        sender=Organ(sender),
        level=Level.STRICT,
        document_id=document_id,
        recipients=(Organ("000.00.00.H53"),),
        business=Business(business),
    )


def intake(
    data: bytes,
    *,
    message_id: str | None = None,
    mailboxes: tuple[str, ...] = ("000.00.00.H53",),
    links: tuple[str, ...] = (),
    **package_args: object,
) -> Intake:
    return Intake(
        message_id=message_id or str(uuid.uuid4()),
        package=package(data, **package_args),  # type: ignore[arg-type]
        data=data,
        source="test",
        envelope=b"envelope:" + data[:16],
        outbox=tuple(OutboxItem(Destination.MAILBOX, m) for m in mailboxes)
        + tuple(OutboxItem(Destination.LINK, link) for link in links),
        received_at=datetime.now(UTC),
    )
