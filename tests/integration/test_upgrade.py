"""An upgrade of a running tree, one node at a time, with packages in flight: the previous
release's code and this one's as node processes on the real RabbitMQ, neighbours of each
other while the upgrade goes on (docs/operations.md, "Upgrades")."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adapters.client import NodeClient
from adapters.store_sqlite import MIGRATIONS, SqliteStore
from exchange.errors import TransientFault
from exchange.evidence import EventKind
from tests.integration.broker import AMQP_URL
from tests.integration.test_tracking_process import states
from tests.integration.test_tree_process import COMMUNE_AGENCY, HOMES, PARENTS, PROVINCE
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration

# the last release before this one's work: move it forward at each release
PREVIOUS_RELEASE = "1940939"
REPOSITORY = Path(__file__).resolve().parents[2]

EVERY_S = 0.25  # each sender submits a document four times a second
AT_ONCE = 32  # submissions of one sender waiting for their answer at most
ANSWER_TIMEOUT_S = 10.0  # then the sender sends the same bytes again
RETRY_PAUSE_S = 0.5  # after an answer that asks for it (the node is draining, say)
TRANSIENT_REFUSALS = {"node.draining", "store.disk_full", "intake.rate_limited"}


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's code, out of this repository's history."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed: the previous release cannot be taken out")
    known = subprocess.run(
        [git, "-C", str(REPOSITORY), "cat-file", "-e", f"{PREVIOUS_RELEASE}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if known.returncode != 0:
        pytest.skip(
            f"commit {PREVIOUS_RELEASE} (the previous release) is not in {REPOSITORY}: "
            "not a git checkout, or a shallow clone (git fetch --unshallow)"
        )
    archive = subprocess.run(
        [git, "-C", str(REPOSITORY), "archive", PREVIOUS_RELEASE], capture_output=True, check=True
    )
    code = tmp_path_factory.mktemp("previous-release")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(code, filter="data")
    # it runs with this Python and its packages: the same dependencies, or it says so here
    imported = subprocess.run(
        [sys.executable, "-c", "import adapters.cli, exchange; print(exchange.__file__)"],
        cwd=code,
        env={**os.environ, "PYTHONPATH": str(code)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert imported.returncode == 0, f"the previous release does not import: {imported.stderr}"
    assert Path(imported.stdout.strip()).is_relative_to(code), imported.stdout
    return code


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[TreeProcesses]:
    processes = TreeProcesses(tmp_path, PARENTS, HOMES)
    yield processes
    await processes.cleanup()


@dataclass(frozen=True)
class Sent:
    number: int
    message_id: str


@dataclass
class Stream:
    """An agency's document system sending to another agency at a steady pace. A
    submission its node does not answer in time (the node is being upgraded: the
    submission waits in the node's queue) is sent again, the same bytes, until the node
    answers; ``accepted`` or ``duplicate`` both carry the package's message id."""

    tree: TreeProcesses
    sender: str
    recipient: str
    next_number: int = 1
    sent: list[Sent] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _news: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def home(self) -> str:
        return next(n for n, node in self.tree.ids.items() if node == self.tree.homes[self.sender])

    def client(self) -> NodeClient:
        return NodeClient(AMQP_URL, self.tree.ids[self.home], timeout_s=ANSWER_TIMEOUT_S)

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop``; returns when every submission has its answer."""
        gate = asyncio.Semaphore(AT_ONCE)
        async with self.client() as client, asyncio.TaskGroup() as submissions:
            while not stop.is_set():
                await gate.acquire()
                number, self.next_number = self.next_number, self.next_number + 1
                submissions.create_task(self._submit(client, number, gate))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), EVERY_S)

    async def _submit(self, client: NodeClient, number: int, gate: asyncio.Semaphore) -> None:
        data = self.tree.signed(self.sender, [self.recipient], number)
        try:
            while True:
                try:
                    (answer,) = await client.submit([data], as_organ=self.sender)
                except TransientFault:  # no answer in time: send it again
                    continue
                if answer.outcome in ("accepted", "duplicate") and answer.message_id:
                    self.sent.append(Sent(number, answer.message_id))
                    self._news.set()
                    return
                if answer.code not in TRANSIENT_REFUSALS:
                    self.refused.append(
                        f"{number}: {answer.outcome} [{answer.code}] {answer.reason}"
                    )
                    return
                await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            gate.release()

    async def answered_from(self, number: int) -> Sent:
        """The first package numbered ``number`` or later, once its node has answered."""
        async with asyncio.timeout(60):
            while not (later := [s for s in self.sent if s.number >= number]):
                self._news.clear()
                await self._news.wait()
        return min(later, key=lambda s: s.number)

    async def delivered(self, sent: Sent) -> None:
        """Until the sender's node says the package was delivered: its receipt came back."""
        async with self.client() as client:
            await states(
                client, self.sender, sent.message_id, {self.recipient: ("delivered", None)}
            )


@pytest.mark.timeout(180)  # about a minute: six node starts, each a few seconds
async def test_an_upgrade_with_packages_in_flight_loses_nothing(
    tree: TreeProcesses, previous_release: Path
) -> None:
    for name in PARENTS:
        tree.start(name, code=previous_release)
    for name in PARENTS:
        await tree.ready(name)
    up = Stream(tree, COMMUNE_AGENCY, PROVINCE)
    down = Stream(tree, PROVINCE, COMMUNE_AGENCY)
    streams = (up, down)
    waited: list[range] = []  # what a sender submitted while its node was down
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as senders:
        for stream in streams:
            senders.create_task(stream.run(stop))
        for stream in streams:  # the previous release's tree carries both ways, a while
            await stream.delivered(await stream.answered_from(8))
        # children first: for a while each new node has an old neighbour, as its parent
        # (the commune, then the district) and as its child (the district, then the province)
        for name in ("commune", "district", "province"):
            marks = [stream.next_number for stream in streams]
            await tree.stopped(name)  # SIGTERM, packages still coming
            down_from = {stream.home: stream.next_number for stream in streams}
            tree.start(name)  # this release, on the same node file and store
            await tree.ready(name)
            waited += [range(down_from[s.home], s.next_number) for s in streams if s.home == name]
            for stream, mark in zip(streams, marks, strict=True):
                # what was submitted as the node went down arrives, and its receipt is back
                await stream.delivered(await stream.answered_from(mark))
            # and the tree carries on both ways a while (two seconds more), two releases
            # side by side until the last step
            marks = [stream.next_number + 8 for stream in streams]
            for stream, mark in zip(streams, marks, strict=True):
                await stream.delivered(await stream.answered_from(mark))
        stop.set()

    assert len(waited) == 2, waited
    assert all(waited), f"no submission waited for its node: {waited}"
    for stream in streams:
        assert stream.refused == [], stream.refused
        # every submission was answered, those made while its node was down included
        assert sorted(s.number for s in stream.sent) == list(range(1, stream.next_number))
        owed = {s.message_id for s in stream.sent}
        found = await tree.wait_for_mailbox(stream.recipient, len(owed))
        twice = [m for m, n in Counter(found).items() if n > 1]
        assert twice == [], f"in {stream.recipient}'s mailbox twice: {twice}"
        assert set(found) == owed
        await receipts_for(tree, stream, owed)
    for name in PARENTS:
        store = tree.folder / name / "store"
        assert schema_version(store) == len(MIGRATIONS), f"{name}: not migrated forward"
        opened = SqliteStore(store)
        try:
            assert await opened.dead_letters(include_replayed=True) == [], name
            assert await opened.failed_outbox() == [], name
        finally:
            await opened.close()


async def receipts_for(tree: TreeProcesses, stream: Stream, owed: set[str]) -> None:
    """Until the sender's node holds a delivered receipt for every package it was owed."""
    store = SqliteStore(tree.folder / stream.home / "store")
    try:
        async with asyncio.timeout(60):
            while True:
                entries = await store.log_entries(limit=1_000_000)
                delivered = {
                    e.event.message_id
                    for e in entries
                    if e.event.kind is EventKind.DELIVERED
                    and stream.recipient in e.event.detail.get("recipients", ())
                }
                if owed <= delivered:
                    return
                await asyncio.sleep(0.2)  # polls another process's store
    finally:
        await store.close()


def schema_version(store: Path) -> int:
    with contextlib.closing(sqlite3.connect(store / "lienthong.db")) as db:
        return int(db.execute("SELECT max(version) FROM schema_version").fetchone()[0])


async def test_a_node_started_on_a_store_newer_than_its_code_refuses_to_start(
    tree: TreeProcesses,
) -> None:
    """A downgrade without the backup: the node says what to do, and exits untouched."""
    folder = tree.folder / "province" / "store"
    store = SqliteStore(folder)
    await store.migrate()
    await store.close()
    db = sqlite3.connect(folder / "lienthong.db")
    try:
        with db:  # what a newer release's migration leaves behind
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS) + 1,))
    finally:
        db.close()
    node = tree.start("province")
    assert await asyncio.to_thread(node.wait, 60) == 2
    log = (tree.folder / "province" / "node.log").read_text()
    assert (
        f"lienthong: the SQLite store at {folder} is at schema version {len(MIGRATIONS) + 1}, "
        f"newer than this lienthong knows (version {len(MIGRATIONS)}): run the newer "
        "lienthong, or restore the backup taken before the upgrade"
    ) in log
    assert schema_version(folder) == len(MIGRATIONS) + 1
