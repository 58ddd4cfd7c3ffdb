"""One contract, two stores: SQLite (embedded) and PostgreSQL (shared), over real files
and a real server. Each test runs against both."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from adapters.store_postgres import MIGRATIONS as PG_MIGRATIONS
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from adapters.store_sqlite import SqliteStore
from exchange.errors import ConfigurationError, PackageTooLarge
from exchange.model import BusinessType
from exchange.store import Attempt, Destination, Outcome
from tests.contract.stores import (
    BACKENDS,
    PG_DSN,
    drop_location,
    intake,
    new_location,
    open_store,
)

pytestmark = pytest.mark.integration

Store = SqliteStore | PostgresStore


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: str = request.param
    where = new_location(backend, tmp_path)
    opened = open_store(backend, where)
    await opened.migrate()
    yield opened
    await opened.close()
    drop_location(backend, where)


async def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    latest = len(SQLITE_MIGRATIONS if isinstance(store, SqliteStore) else PG_MIGRATIONS)
    assert await store.migrate() == latest
    assert await store.migrate() == latest


async def test_a_store_written_by_a_newer_release_is_refused_and_left_as_it_was(
    store: Store,
) -> None:
    """Started again after a downgrade, the code finds a schema it does not know: it says
    both versions and what to do, and changes nothing."""
    latest = len(SQLITE_MIGRATIONS if isinstance(store, SqliteStore) else PG_MIGRATIONS)
    await store.commit_intake(intake(b"<d/>", message_id="m-1"))
    await newer_release_ran(store, latest + 1)
    with pytest.raises(ConfigurationError) as refused:
        await store.migrate()
    message = refused.value.message
    assert f"schema version {latest + 1}, newer than this lienthong knows (version {latest})" in (
        message
    )
    assert message.endswith(
        "run the newer lienthong, or restore the backup taken before the upgrade"
    )
    await newer_release_ran(store, None)  # the newer release's mark taken away again
    assert await store.migrate() == latest  # the refusal left the store as it was
    trail = await store.trail("m-1")
    assert trail is not None
    assert [step.target for step in trail.steps] == ["000.00.00.H53"]


async def newer_release_ran(store: Store, version: int | None) -> None:
    """What a newer release's migration leaves behind: its row in ``schema_version``
    (``None`` deletes the rows above this code's own)."""
    latest = len(SQLITE_MIGRATIONS if isinstance(store, SqliteStore) else PG_MIGRATIONS)
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.folder / "lienthong.db") as db:
            if version is None:
                db.execute("DELETE FROM schema_version WHERE version > ?", (latest,))
            else:
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        return
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        table = f"{store.schema}.schema_version"
        if version is None:
            conn.execute(f"DELETE FROM {table} WHERE version > %s".encode(), (latest,))
        else:
            conn.execute(f"INSERT INTO {table} (version) VALUES (%s)".encode(), (version,))


async def test_the_document_index_finds_sender_and_recipients(store: Store) -> None:
    await store.commit_intake(intake(b"<d/>", message_id="m-1"))
    known = await store.document("000.00.00.G22,2026/11/20,125/UBND-VP")
    assert known is not None
    assert (known.message_id, known.sender, known.recipients) == (
        "m-1",
        "000.00.00.G22",
        ("000.00.00.H53",),
    )
    assert await store.document("unknown") is None


async def test_a_committed_package_comes_back_byte_identical(store: Store) -> None:
    data = "<edXML>Trích yếu: V/v triển khai</edXML>".encode()
    result = await store.commit_intake(intake(data, message_id="m-1"))
    assert (result.outcome, result.message_id, result.level) == (Outcome.COMMITTED, "m-1", "strict")
    digest = await store.find_digest(result_digest(data))
    assert digest is not None
    assert (digest.message_id, digest.sender) == ("m-1", "000.00.00.G22")
    assert await store.package_bytes(result_digest(data)) == data
    assert await store.envelope("m-1") == b"envelope:" + data[:16]
    path = await store.package_file(result_digest(data))  # a file to stream, where kept so
    assert path is None or path.read_bytes() == data
    with pytest.raises(KeyError):
        await store.package_bytes(result_digest(b"never stored"))


def result_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_the_same_bytes_again_get_the_original_answer(store: Store) -> None:
    first = await store.commit_intake(intake(b"<a/>", message_id="m-1"))
    again = await store.commit_intake(intake(b"<a/>", message_id="m-2"))
    assert first.outcome is Outcome.COMMITTED
    assert (again.outcome, again.message_id) == (Outcome.DUPLICATE, "m-1")
    assert [row.message_id for row in await store.pending_outbox(10)] == ["m-1"]


async def test_a_new_document_resent_with_other_bytes_is_a_conflict(store: Store) -> None:
    await store.commit_intake(intake(b"<a>first</a>", message_id="m-1"))
    other = await store.commit_intake(intake(b"<a>second</a>", message_id="m-2"))
    assert (other.outcome, other.message_id) == (Outcome.CONFLICT, "m-1")
    assert await store.find_digest(result_digest(b"<a>second</a>")) is None


async def test_revocations_are_keyed_by_digest_not_document_id(store: Store) -> None:
    one = await store.commit_intake(intake(b"<r>1</r>", business=BusinessType.REVOKE))
    two = await store.commit_intake(intake(b"<r>2</r>", business=BusinessType.REVOKE))
    assert one.outcome is two.outcome is Outcome.COMMITTED


async def test_dedup_keys_expire_after_the_retention(store: Store) -> None:
    await store.commit_intake(intake(b"<a>first</a>", message_id="m-1"))
    assert await store.prune_dedup(datetime.now(UTC) + timedelta(seconds=1)) == 1
    again = await store.commit_intake(intake(b"<a>second</a>", message_id="m-2"))
    assert (again.outcome, again.message_id) == (Outcome.COMMITTED, "m-2")


async def test_the_outbox_lists_each_destination_until_done(store: Store) -> None:
    await store.commit_intake(
        intake(b"<a/>", message_id="m-1", mailboxes=("A", "B"), links=("parent/normal",))
    )
    pending = await store.pending_outbox(10)
    assert {(r.destination, r.target) for r in pending} == {
        (Destination.MAILBOX, "A"),
        (Destination.MAILBOX, "B"),
        (Destination.LINK, "parent/normal"),
    }
    await store.mark_outbox_done([pending[0].id])
    await store.mark_outbox_done([pending[0].id])  # a repeated confirm changes nothing
    assert [r.id for r in await store.pending_outbox(10)] == [r.id for r in pending[1:]]
    assert len(await store.pending_outbox(1)) == 1


async def test_a_given_up_row_keeps_its_reason_and_its_age(store: Store) -> None:
    written = intake(b"<a/>", message_id="m-1", mailboxes=(), links=("up/normal", "down/urgent"))
    await store.commit_intake(written)
    first, second = await store.pending_outbox(10)
    assert first.created_at == written.received_at  # what expiry is judged from
    await store.finish_outbox([], [], [(first.id, "expired: waited since then")])
    await store.finish_outbox([], [], [(first.id, "expired again")])  # once only
    assert [r.id for r in await store.pending_outbox(10)] == [second.id]
    (failed,) = await store.failed_outbox()
    assert (failed.message_id, failed.target, failed.failure) == (
        "m-1",
        first.target,
        "expired: waited since then",
    )


async def test_the_outbox_passes_over_the_links_that_refused(store: Store) -> None:
    await store.commit_intake(
        intake(b"<a/>", message_id="m-1", mailboxes=(), links=("full/normal",))
    )
    await store.commit_intake(
        intake(
            b"<b/>", message_id="m-2", mailboxes=("A",), links=("other/normal",), document_id="d-2"
        )
    )
    assert [r.target for r in await store.pending_outbox(1)] == ["full/normal"]
    passed_over = await store.pending_outbox(10, skip_targets={"full/normal"})
    assert sorted(r.target for r in passed_over) == ["A", "other/normal"]
    assert await store.pending_outbox(10, skip_targets={"full/normal", "A", "other/normal"}) == []


async def test_a_document_id_belongs_to_the_sender_who_used_it_first(store: Store) -> None:
    first = await store.commit_intake(intake(b"<a/>", message_id="m-1", document_id="d-1"))
    assert first.outcome is Outcome.COMMITTED
    other = await store.commit_intake(
        intake(b"<b/>", message_id="m-2", document_id="d-1", sender="000.00.00.H41")
    )
    assert (other.outcome, other.message_id, other.sender) == (
        Outcome.TAKEN,
        "m-1",
        "000.00.00.G22",
    )
    assert [r.message_id for r in await store.pending_outbox(10)] == ["m-1"]  # m-2 wrote nothing
    # two senders racing with one new DocumentId: exactly one of them has it
    racing = await asyncio.gather(
        *[
            store.commit_intake(
                intake(f"<c{i}/>".encode(), message_id=f"r-{i}", document_id="d-2", sender=s)
            )
            for i, s in enumerate(["000.00.00.H41", "000.00.00.H53", "000.00.00.G14"])
        ]
    )
    assert sorted(r.outcome for r in racing) == [Outcome.COMMITTED, Outcome.TAKEN, Outcome.TAKEN]


async def test_the_trail_says_where_each_copy_of_a_package_stands(store: Store) -> None:
    assert await store.trail("nowhere") is None
    written = intake(
        b"<a/>", message_id="m-1", mailboxes=("A", "B", "C"), links=("up/normal", "down/normal")
    )
    await store.commit_intake(written)
    rows = {r.target: r.id for r in await store.pending_outbox(10)}
    await store.finish_outbox(
        [("A", "m-1"), ("B", "m-1")], [rows["A"], rows["B"], rows["up/normal"]]
    )
    await store.mark_fetched("B", ["m-1"])
    await store.finish_outbox([], [], [(rows["down/normal"], "expired: waited a week")])
    trail = await store.trail("m-1")
    assert trail is not None
    assert (trail.sender, trail.source, trail.level) == ("000.00.00.G22", "test", "strict")
    assert [(s.target, s.state, s.reason) for s in trail.steps] == [
        ("A", "delivered", None),
        ("B", "fetched", None),
        ("C", "waiting", None),
        ("up/normal", "forwarded", None),
        ("down/normal", "failed", "expired: waited a week"),
    ]
    assert trail.steps[2].at == written.received_at  # waiting since it was written


async def test_a_mailbox_holds_a_package_exactly_once(store: Store) -> None:
    await store.commit_intake(intake(b"<a/>", message_id="m-1"))
    assert await store.deliver("000.00.00.H53", "m-1") is True
    assert await store.deliver("000.00.00.H53", "m-1") is False
    (entry,) = await store.mailbox("000.00.00.H53", unfetched_only=True, limit=10)
    assert (entry.message_id, entry.sender, entry.kind) == ("m-1", "000.00.00.G22", "edoc")
    assert await store.mark_fetched("000.00.00.H53", ["m-1"]) == 1
    assert await store.mark_fetched("000.00.00.H53", ["m-1"]) == 0
    assert await store.mailbox("000.00.00.H53", unfetched_only=True, limit=10) == []
    (fetched,) = await store.mailbox("000.00.00.H53", unfetched_only=False, limit=10)
    assert fetched.fetched_at is not None


async def test_attempts_are_counted_until_cleared(store: Store) -> None:
    assert await store.record_attempt("d1") == 1
    assert await store.record_attempt("d1", "parse failed") == 2
    assert await store.attempt_error("d1") == "parse failed"
    assert await store.record_attempt("d1", delta=-1) == 1  # one taken back
    assert await store.record_attempt("d1", "still failing", delta=0) == 1
    assert await store.attempt_error("d1") == "still failing"
    await store.clear_attempts("d1")
    assert await store.record_attempt("d1") == 1


async def test_an_intake_begins_with_its_dedup_answer_its_dead_letter_or_one_more_attempt(
    store: Store,
) -> None:
    data = b"<edXML>first</edXML>"
    digest = result_digest(data)
    assert await store.begin_attempt(digest) == Attempt(count=1)
    assert await store.begin_attempt(digest) == Attempt(count=2)
    assert await store.attempt_error(digest) is None
    await store.commit_intake(intake(data, message_id="m-1"))  # ends the count
    known = (await store.begin_attempt(digest)).known
    assert known is not None
    assert (known.outcome, known.message_id, known.sender) == (
        Outcome.DUPLICATE,
        "m-1",
        "000.00.00.G22",
    )
    poison = b"\x00 not xml"
    dead, _ = await store.add_dead_letter(poison, "amqp", "crashed 5 times", 5)
    assert await store.begin_attempt(result_digest(poison)) == Attempt(held=dead)
    assert await store.record_attempt(result_digest(poison)) == 1  # none counted while held
    await store.mark_replayed(dead)
    assert await store.begin_attempt(result_digest(poison)) == Attempt(count=2)


async def test_dead_letters_keep_bytes_and_reason_until_replayed(store: Store) -> None:
    data = b"\x00 not xml"
    dead, created = await store.add_dead_letter(data, "agency-amqp", "worker crashed 5 times", 5)
    assert created
    assert await store.add_dead_letter(data, "agency-amqp", "again", 5) == (dead, False)
    assert await store.dead_letter_for(result_digest(data)) == dead
    (listed,) = await store.dead_letters()
    assert (listed.id, listed.reason, listed.attempts, listed.source) == (
        dead,
        "worker crashed 5 times",
        5,
        "agency-amqp",
    )
    assert await store.dead_letter_bytes(dead) == data
    await store.mark_replayed(dead)
    assert await store.dead_letters() == []
    assert await store.dead_letter_for(result_digest(data)) is None
    (kept,) = await store.dead_letters(include_replayed=True)
    assert kept.replayed_at is not None


# --- two processes racing on one key --------------------------------------------------


def _racer(
    backend: str, where: str, data: bytes, message_id: str, barrier: object, out: object
) -> None:
    async def go() -> None:
        store = open_store(backend, where)
        barrier.wait()  # type: ignore[attr-defined]
        result = await store.commit_intake(intake(data, message_id=message_id))
        out.put((message_id, result.outcome.value, result.message_id))  # type: ignore[attr-defined]
        await store.close()

    asyncio.run(go())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("same_bytes", [True, False], ids=["same-bytes", "other-bytes"])
async def test_two_processes_racing_on_one_key_commit_once(
    backend: str, same_bytes: bool, tmp_path: Path
) -> None:
    where = new_location(backend, tmp_path)
    first = open_store(backend, where)
    await first.migrate()
    context = multiprocessing.get_context("spawn")
    barrier, out = context.Barrier(2), context.Queue()
    payloads = [b"<a>same</a>", b"<a>same</a>" if same_bytes else b"<a>other</a>"]
    racers = [
        context.Process(target=_racer, args=(backend, where, payloads[i], f"m-{i}", barrier, out))
        for i in range(2)
    ]
    for racer in racers:
        racer.start()
    results = [out.get(timeout=30) for _ in racers]
    for racer in racers:
        racer.join(timeout=30)
        assert racer.exitcode == 0
    outcomes = sorted(outcome for _, outcome, _ in results)
    winner = next(mine for mine, outcome, _ in results if outcome == "committed")
    assert outcomes == sorted(["committed", "duplicate" if same_bytes else "conflict"])
    assert all(answer == winner for _, _, answer in results), "the loser is told the winner's id"
    assert [r.message_id for r in await first.pending_outbox(10)] == [winner]
    await first.close()
    drop_location(backend, where)


async def test_orphaned_bytes_are_collected_and_named_ones_kept(store: Store) -> None:
    await store.commit_intake(intake(b"<kept/>", message_id="m-1"))
    if isinstance(store, SqliteStore):  # an intake that died after its blob, before its row
        store.blobs.put(result_digest(b"<orphan/>"), b"<orphan/>")
        assert store.blobs.path(result_digest(b"<orphan/>")).exists()
        assert await store.collect_garbage(grace_seconds=3600) == 0  # too young to judge
        assert await store.collect_garbage(grace_seconds=-1) == 1
        assert not store.blobs.path(result_digest(b"<orphan/>")).exists()
    else:
        assert await store.collect_garbage(grace_seconds=-1) == 0  # blobs live in the transaction
    assert await store.package_bytes(result_digest(b"<kept/>")) == b"<kept/>"


async def test_intakes_committed_together_keep_their_answers(store: Store) -> None:
    """Several intakes in flight at once, as a node with concurrent intake makes them."""
    results = await asyncio.gather(
        store.commit_intake(intake(b"<a>first</a>", message_id="m-1")),
        store.commit_intake(intake(b"<a>other bytes, same key</a>", message_id="m-2")),
        store.commit_intake(intake(b"<a>first</a>", message_id="m-3")),
        *[
            store.commit_intake(
                intake(f"<b>{i}</b>".encode(), message_id=f"n-{i}", document_id=f"d-{i}")
            )
            for i in range(5)
        ],
    )
    first, other, again, *others = results
    # one of the three sharing the key got it, whichever came first; the others are told
    # its id, as duplicates when they carry its bytes and as conflicts when not
    (winner,) = [r for r in (first, other, again) if r.outcome is Outcome.COMMITTED]
    assert first.message_id == other.message_id == again.message_id == winner.message_id
    winning_bytes = {"m-1": "first", "m-3": "first", "m-2": "other"}[winner.message_id]
    for result, body in ((first, "first"), (other, "other"), (again, "first")):
        if result is not winner:
            expected = Outcome.DUPLICATE if body == winning_bytes else Outcome.CONFLICT
            assert result.outcome is expected
    assert [r.outcome for r in others] == [Outcome.COMMITTED] * 5
    assert len(await store.pending_outbox(100)) == 6


async def test_a_mailbox_is_read_in_pages_and_one_package_at_a_time(store: Store) -> None:
    for n in range(5):
        await store.commit_intake(
            intake(f"<p{n}/>".encode(), message_id=f"m-{n}", document_id=None)
        )
    rows = await store.pending_outbox(10)
    await store.finish_outbox([(r.target, r.message_id) for r in rows], [r.id for r in rows])
    pages = [
        [
            e.message_id
            for e in await store.mailbox("000.00.00.H53", unfetched_only=False, limit=2, offset=o)
        ]
        for o in (0, 2, 4)
    ]
    assert sorted(m for page in pages for m in page) == [f"m-{n}" for n in range(5)]
    assert [len(p) for p in pages] == [2, 2, 1]
    entry = await store.mailbox_entry("000.00.00.H53", "m-3")
    assert entry is not None
    assert (entry.message_id, entry.sender) == ("m-3", "000.00.00.G22")
    assert await store.mailbox_entry("000.00.00.H41", "m-3") is None  # another agency's mail
    assert await store.mailbox_entry("000.00.00.H53", "m-9") is None


async def test_an_idempotency_key_is_bound_to_its_bytes_for_its_caller(store: Store) -> None:
    at = datetime.now(UTC)
    assert await store.claim_key("qlvb", "k-1", "aa" * 32, at) is None
    assert await store.claim_key("qlvb", "k-1", "aa" * 32, at) is None  # the same bytes again
    assert await store.claim_key("qlvb", "k-1", "bb" * 32, at) == "aa" * 32  # other bytes
    assert await store.claim_key("other", "k-1", "bb" * 32, at) is None  # another caller's key
    await store.prune_dedup(at + timedelta(seconds=1))
    assert await store.claim_key("qlvb", "k-1", "bb" * 32, at) is None  # forgotten with dedup


async def test_a_spooled_package_is_taken_over_without_being_read_whole(store: Store) -> None:
    """A large package arrives as a file in the store's spool; a store that keeps bytes in
    its database has no spool and refuses it by name."""
    data = b"<edXML>" + b"A" * 200_000 + b"</edXML>"
    spool = store.spool_folder()
    if spool is None:
        with pytest.raises(PackageTooLarge, match="inline cap"):
            await store.commit_intake(replace(intake(data), data=Path("/nonexistent")))
        return
    first = spool / "incoming-1"
    first.write_bytes(data)
    result = await store.commit_intake(replace(intake(data, message_id="m-big"), data=first))
    assert (result.outcome, result.message_id) == (Outcome.COMMITTED, "m-big")
    assert not first.exists(), "the spooled file became the stored bytes"
    assert await store.package_bytes(result_digest(data)) == data
    again = spool / "incoming-2"
    again.write_bytes(data)
    answer = await store.commit_intake(replace(intake(data), data=again))
    assert (answer.outcome, answer.message_id) == (Outcome.DUPLICATE, "m-big")
    assert not again.exists(), "a duplicate's spooled copy is not left behind"


async def test_a_mailbox_page_may_leave_out_what_is_too_large_for_it(store: Store) -> None:
    small, large = b"<edXML>small</edXML>", b"<edXML>" + b"L" * 5000 + b"</edXML>"
    for data, message_id in ((large, "m-large"), (small, "m-small")):
        await store.commit_intake(intake(data, message_id=message_id, document_id=message_id))
        await store.finish_outbox([("000.00.00.H53", message_id)], [])
    every = await store.mailbox("000.00.00.H53", unfetched_only=True, limit=1)
    assert [(e.message_id, e.size) for e in every] == [("m-large", len(large))]
    fits = await store.mailbox("000.00.00.H53", unfetched_only=True, limit=1, max_size=100)
    assert [e.message_id for e in fits] == ["m-small"], "the large one does not hold it up"
