"""What only the embedded store has: its blob folder on disk."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters import store_sqlite
from adapters.store_sqlite import MIGRATIONS, SqliteStore
from exchange.store import Operations, Outcome
from tests.contract.stores import intake


async def test_blobs_of_the_first_layout_are_moved_once_and_still_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store written by the first release (ab/cd/<digest>) opens under this one."""
    folder = tmp_path / "store"
    data = "<edXML>Công văn số 125</edXML>".encode()
    digest = hashlib.sha256(data).hexdigest()
    with monkeypatch.context() as first_release:  # its schema: the first two migrations
        first_release.setattr(store_sqlite, "MIGRATIONS", MIGRATIONS[:2])
        store = SqliteStore(folder)
        assert await store.migrate() == 2
        await store.close()
    # and its blob layout: two folders deep, with a write that died half way
    legacy = folder / "blobs" / digest[:2] / digest[2:4] / digest
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(data)
    (legacy.parent / f".{digest}.123.tmp").write_bytes(b"half a write")

    reopened = SqliteStore(folder)
    assert await reopened.migrate() == len(MIGRATIONS)
    assert await reopened.package_bytes(digest) == data
    assert not legacy.parent.exists()  # the inner folder and the dead write are gone
    await reopened.commit_intake(intake(data, message_id="m-1"))  # a row names it now
    assert await reopened.collect_garbage(grace_seconds=-1) == 0  # named: kept
    await reopened.close()


async def test_the_same_bytes_written_at_once_by_two_intakes_land_whole(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    await store.migrate()
    data = b"<edXML>" + b"x" * 200_000 + b"</edXML>"
    digest = hashlib.sha256(data).hexdigest()
    for _ in range(20):  # blob writers run side by side: each writes its own temporary file
        store.blobs.remove(digest)
        first = store.commit_intake(intake(data, message_id="m-a"))
        second = store.commit_intake(intake(data, message_id="m-b"))
        await asyncio.gather(first, second)
        assert store.blobs.get(digest) == data
    assert [p.name for p in (tmp_path / "store" / "blobs" / digest[:2]).iterdir()] == [digest]
    await store.close()


async def test_an_operators_count_never_holds_up_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counts behind /status scan rows that grow with the store; while one runs, a
    package is still committed and found (before, they queued behind it on one thread)."""
    store = SqliteStore(tmp_path / "store")
    await store.migrate()
    await store.commit_intake(intake(b"<edXML>first</edXML>", message_id="m-1"))
    scanning, finish = threading.Event(), threading.Event()
    counted = store_sqlite.ops_sqlite.operations

    def slow_count(db: sqlite3.Connection, since: datetime) -> Operations:
        scanning.set()
        finish.wait(10)  # a scan of a big store
        return counted(db, since)

    monkeypatch.setattr(store_sqlite.ops_sqlite, "operations", slow_count)
    status = asyncio.ensure_future(store.operations(datetime.now(UTC) - timedelta(hours=1)))
    await asyncio.to_thread(scanning.wait, 10)
    try:
        async with asyncio.timeout(5):  # on one thread, this would wait for the scan
            second = await store.commit_intake(
                intake(b"<edXML>second</edXML>", message_id="m-2", document_id="G22,126/UBND")
            )
            assert second.outcome is Outcome.COMMITTED
        assert not status.done()  # the count was still running meanwhile
    finally:
        finish.set()
    ops = await status
    assert ops is not None  # and it answers, from the read-only connection
    await store.close()
