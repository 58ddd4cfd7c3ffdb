"""A full disk under the store (the ``LIENTHONG_FAULTS`` seam, adapters/faults.py): what
each write raises while the switch file exists, what is left on disk, and what a submitter
and an operator are told; afterwards, the package goes through, never dead-lettered."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.agency_gate import AgencyGate
from adapters.durable import PLAIN, write_atomically
from adapters.faults import ENOSPC, FAULTS_ENV, FullDisk, disk_from
from adapters.http_api import build_app
from adapters.ops_http import add_ops_routes
from adapters.ops_status import OpsView
from adapters.spool import Spool
from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admission, Admitted, admit
from exchange.config import Credential
from exchange.config_http import HttpClient, HttpOperator, HttpSettings
from exchange.envelope import NodeKey
from exchange.errors import StoreFull
from exchange.node import Node, NodeSettings
from exchange.policy import VerificationPolicy
from exchange.signing import sign
from exchange.transport import Message, QueueSpec
from tests.conftest import example
from tests.pki import G22, H53, DevPki

COMMUNE = "000.21.31.H53"
TOKEN, OPS = "t-g22-disk-full", "t-ops-disk-full"


@pytest.fixture
def switch(tmp_path: Path) -> Path:
    return tmp_path / "faults" / ENOSPC


def full(switch: Path) -> None:
    switch.parent.mkdir(parents=True, exist_ok=True)
    switch.touch()


# --- the seam ----------------------------------------------------------------------------


def test_the_seam_is_off_unless_the_environment_names_a_folder(tmp_path: Path) -> None:
    assert disk_from({}) is PLAIN
    disk = disk_from({FAULTS_ENV: str(tmp_path)})
    assert isinstance(disk, FullDisk)
    assert disk.switch == tmp_path / "enospc"


def test_a_file_write_fails_with_enospc_while_the_switch_exists_and_leaves_nothing(
    tmp_path: Path, switch: Path
) -> None:
    disk = FullDisk(switch)
    target = tmp_path / "blob"
    full(switch)
    with pytest.raises(OSError, match="No space left on device") as raised:
        write_atomically(target, b"x" * 10_000, disk)
    assert raised.value.errno == errno.ENOSPC
    assert str(raised.value) == "[Errno 28] No space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["faults"]  # no blob, no temporary
    switch.unlink()
    write_atomically(target, b"x" * 10_000, disk)
    assert target.read_bytes() == b"x" * 10_000


def test_sqlite_writes_fail_as_on_a_full_disk_and_reads_go_on(tmp_path: Path, switch: Path) -> None:
    db = FullDisk(switch).connect(tmp_path / "db", isolation_level=None)
    db.execute("CREATE TABLE t (v INTEGER)")
    db.execute("INSERT INTO t VALUES (1)")
    full(switch)
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        db.execute("INSERT INTO t VALUES (2)")
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO t VALUES (3)")
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        db.execute("COMMIT")
    db.execute("ROLLBACK")
    assert db.execute("SELECT v FROM t").fetchall() == [(1,)]
    switch.unlink()
    db.execute("INSERT INTO t VALUES (4)")
    assert db.execute("SELECT v FROM t").fetchall() == [(1,), (4,)]


async def test_a_spooled_transfer_cut_by_a_full_disk_keeps_only_what_was_written(
    tmp_path: Path, switch: Path
) -> None:
    spool = Spool(tmp_path / "spool", chunk=64 * 1024, disk=FullDisk(switch))
    data = bytes(range(256)) * 1024  # 256 KiB: four chunks
    digest = hashlib.sha256(data).hexdigest()
    async with spool.writer(digest, len(data)) as writer:
        await writer.write(data[: 64 * 1024])
    full(switch)
    with pytest.raises(StoreFull):
        async with spool.writer(digest, len(data)) as writer:
            await writer.write(data[64 * 1024 : 128 * 1024])
    assert spool.offset(digest) == 64 * 1024  # the half-written chunk was cut back off
    switch.unlink()
    async with spool.writer(digest, len(data)) as writer:
        assert writer.offset == 64 * 1024
        await writer.write(data[64 * 1024 :])
        final = await writer.complete()
    assert final.read_bytes() == data


# --- the store ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def full_node(
    tmp_path: Path, admission: Admission, switch: Path, *, database: bool = True
) -> AsyncIterator[Node]:
    """A node whose store's disk is full while ``switch`` exists (its blob folder only,
    without ``database``)."""
    store = SqliteStore(tmp_path / "store", disk=FullDisk(switch) if database else PLAIN)
    store.blobs.disk = FullDisk(switch)
    await store.migrate()
    transport = MemoryTransport()

    async def run_admission(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    node = Node(
        NodeSettings("province-h53", hosted=frozenset({G22, H53, COMMUNE}), max_attempts=3),
        store=store,
        transport=transport,
        admit=run_admission,
        node_key=NodeKey("province-h53", ec.generate_private_key(ec.SECP256R1())),
    )
    await node.declare()
    await transport.declare(QueueSpec("answers"))
    try:
        yield node
    finally:
        await store.close()


async def test_a_blob_cut_short_by_a_full_disk_is_never_taken_for_a_package(
    tmp_path: Path, admission: Admission, pki: DevPki, switch: Path
) -> None:
    """Only the blob folder is full here: the database takes writes, the blob does not."""
    async with full_node(tmp_path, admission, switch, database=False) as node:
        store = node.store
        assert isinstance(store, SqliteStore)
        signed = sign(example("document-new.edxml"), pki.key(G22))
        await node.transport.publish(node.queues.inbound, Message(signed), timeout=5)
        stream = node.transport.consume(node.queues.inbound, prefetch=1)
        full(switch)
        delivery = await anext(stream)
        with pytest.raises(StoreFull):
            await node.handle_submission(delivery)
        blobs = [p for p in store.blobs.root.rglob("*") if p.is_file()]
        assert blobs == []  # neither the half-written bytes nor their temporary file
        assert await store.find_digest(hashlib_of(signed)) is None
        assert "blobs: disk full since" in (await store.disk_full() or "")
        switch.unlink()
        assert await store.disk_full() is None  # tried again by the health check itself
        await delivery.reject(requeue=True)
        answer = await node.handle_submission(await anext(stream))
        await stream.aclose()
        assert answer.outcome == "accepted"
        assert store.blobs.get(hashlib_of(signed)) == signed


def hashlib_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("database", [False, True], ids=["blobs-full", "full-after-counting"])
async def test_a_package_that_meets_a_full_disk_more_often_than_max_attempts_is_not_poison(
    tmp_path: Path, admission: Admission, pki: DevPki, switch: Path, database: bool
) -> None:
    """Blobs full: each try is counted, then taken back. Full after counting: the disk
    fills between the count and its take-back, which cannot be written either: owed."""
    async with full_node(tmp_path, admission, switch, database=database) as node:
        signed = sign(example("document-new.edxml"), pki.key(G22))
        await node.transport.publish(
            node.queues.inbound, Message(signed, reply_to="answers"), timeout=5
        )
        stream = node.transport.consume(node.queues.inbound, prefetch=1)
        begun = node.store.begin_attempt
        if database:
            node.store.begin_attempt = _filling_after(begun, switch)  # type: ignore[method-assign]
        for _ in range(7):  # more than max_attempts (3)
            switch.unlink(missing_ok=True) if database else full(switch)
            delivery = await anext(stream)
            with pytest.raises(StoreFull) as raised:
                await node.handle_submission(delivery)
            assert raised.value.code == "store.disk_full"
            await delivery.reject(requeue=True)
        node.store.begin_attempt = begun  # type: ignore[method-assign]
        switch.unlink()
        answer = await node.handle_submission(await anext(stream))
        await stream.aclose()
        assert answer.outcome == "accepted"
        assert await node.store.dead_letters() == []
        await node.relay_once()
        (entry,) = await node.store.mailbox(H53, unfetched_only=False, limit=10)
        assert entry.message_id == answer.message_id


def _filling_after(begin, switch: Path):  # type: ignore[no-untyped-def]
    async def begin_then_fill(digest: str):  # type: ignore[no-untyped-def]
        begun = await begin(digest)
        full(switch)
        return begun

    return begin_then_fill


async def test_the_relay_waits_out_a_full_disk_and_delivers_once(
    tmp_path: Path, admission: Admission, pki: DevPki, switch: Path
) -> None:
    async with full_node(tmp_path, admission, switch) as node:
        signed = sign(example("document-new.edxml"), pki.key(G22))
        await node.transport.publish(node.queues.inbound, Message(signed), timeout=5)
        stream = node.transport.consume(node.queues.inbound, prefetch=1)
        answer = await node.handle_submission(await anext(stream))
        await stream.aclose()
        full(switch)
        with pytest.raises(StoreFull):
            await node.relay_once()
        assert await node.store.mailbox(H53, unfetched_only=False, limit=10) == []
        switch.unlink()
        await node.relay_once()
        await node.relay_once()
        (entry,) = await node.store.mailbox(H53, unfetched_only=False, limit=10)
        assert entry.message_id == answer.message_id


# --- what a REST submitter and an operator see --------------------------------------------


async def test_a_rest_submission_on_a_full_disk_is_told_to_come_back_and_status_says_why(
    tmp_path: Path, admission: Admission, pki: DevPki, switch: Path
) -> None:
    settings = HttpSettings(
        "127.0.0.1",
        0,
        clients={
            "g22": HttpClient(
                "g22",
                Credential(organs=frozenset({G22})),
                token_sha256=hashlib.sha256(TOKEN.encode()).hexdigest(),
            )
        },
        operators={"ops": HttpOperator("ops", hashlib.sha256(OPS.encode()).hexdigest())},
    )
    async with full_node(tmp_path, admission, switch) as node:
        node.settings = replace(
            node.settings,
            http_credentials={"http:g22": Credential(organs=frozenset({G22}))},
        )
        view = OpsView(node)
        app = build_app(
            AgencyGate(node, dry_run=node._admit),
            settings,
            max_bytes=1024 * 1024,
            extra=lambda app: add_ops_routes(app, view),
        )
        signed = sign(example("document-new.edxml"), pki.key(G22))
        async with TestClient(TestServer(app)) as client:
            full(switch)
            sent = await client.post(
                "/v1/packages", data=signed, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert sent.status == 503, await sent.text()
            assert sent.headers["Retry-After"] == "30"
            assert (await sent.json())["code"] == "store.disk_full"
            status = await (
                await client.get("/status", headers={"Authorization": f"Bearer {OPS}"})
            ).json()
            store = status["health"]["store"]
            assert store["ok"] is False
            assert store["error"].startswith("store.disk_full")
            assert (await client.get("/readyz")).status == 503
            switch.unlink()
            again = await client.post(
                "/v1/packages", data=signed, headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert again.status == 201, await again.text()
            ready = await client.get("/readyz")  # /status is cached for a few seconds
            assert ready.status == 200, await ready.text()
        assert await node.store.dead_letters() == []
