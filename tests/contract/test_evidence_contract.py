"""The evidence log, on both stores: appended with the work it records, once per fact,
chained, searchable, and reported onwards exactly when asked."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from exchange.evidence import GENESIS, Event, EventKind, broken_links
from exchange.model import BusinessType
from tests.contract.stores import BACKENDS, drop_location, intake, new_location, open_store

pytestmark = pytest.mark.integration

Store = SqliteStore | PostgresStore
T0 = datetime(2027, 2, 3, 2, 0, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: str = request.param
    where = new_location(backend, tmp_path)
    opened = open_store(backend, where)
    await opened.migrate()
    yield opened
    await opened.close()
    drop_location(backend, where)


def event(kind: EventKind, key: str, minutes: int = 0, **fields: object) -> Event:
    return Event(kind, key, T0 + timedelta(minutes=minutes), "province-h53", **fields)  # type: ignore[arg-type]


async def test_events_commit_with_the_intake_and_chain_in_order(store: Store) -> None:
    accepted = event(
        EventKind.ACCEPTED,
        "accepted|m-1",
        message_id="m-1",
        document_id="D-1",
        sender="000.00.00.G22",
        digest="ab" * 32,
        detail={"level": "strict", "recipients": ["000.00.00.H53"]},
    )
    await store.commit_intake(
        dataclasses.replace(intake(b"<a/>", message_id="m-1"), events=(accepted,))
    )
    await store.record_events(
        [
            event(
                EventKind.STATUS,
                "status|x",
                5,
                document_id="D-1",
                party="000.00.00.H53",
                detail={"code": "01"},
            )
        ]
    )
    entries = list(await store.log_entries(chain="main"))
    assert [(e.seq, e.event.kind) for e in entries] == [
        (1, EventKind.ACCEPTED),
        (2, EventKind.STATUS),
    ]
    assert entries[0].prev == GENESIS
    assert entries[1].prev == entries[0].hash
    assert entries[0].event == accepted  # what comes back is what was recorded
    assert broken_links(entries) == []
    assert await store.chain_heads() == {"main": (2, entries[1].hash)}


async def test_the_same_fact_twice_is_one_entry(store: Store) -> None:
    fact = event(
        EventKind.FAILED, "failed|m-1|H41", party="000.00.00.H41", detail={"reason": "expired"}
    )
    assert await store.record_events([fact]) == 1
    assert await store.record_events([fact, fact]) == 0
    assert len(await store.log_entries(chain="main")) == 1


async def test_an_intake_that_is_a_duplicate_writes_no_evidence(store: Store) -> None:
    first = intake(b"<a/>", message_id="m-1")
    await store.commit_intake(
        dataclasses.replace(first, events=(event(EventKind.ACCEPTED, "a|m-1"),))
    )
    again = dataclasses.replace(
        intake(b"<a/>", message_id="m-2"), events=(event(EventKind.ACCEPTED, "a|m-2"),)
    )
    await store.commit_intake(again)
    assert [e.event.key for e in await store.log_entries(chain="main")] == ["a|m-1"]


async def test_fetch_events_are_written_only_for_what_was_marked_now(store: Store) -> None:
    await store.commit_intake(intake(b"<a/>", message_id="m-1"))
    rows = await store.pending_outbox(10)
    await store.finish_outbox([("000.00.00.H53", "m-1")], [r.id for r in rows])
    fetched = event(EventKind.FETCHED, "fetched|m-1|H53", message_id="m-1", party="000.00.00.H53")
    stray = event(EventKind.FETCHED, "fetched|m-9|H53", message_id="m-9", party="000.00.00.H53")
    assert await store.mark_fetched("000.00.00.H53", ["m-1", "m-9"], [fetched, stray]) == 1
    assert await store.mark_fetched("000.00.00.H53", ["m-1"], [fetched]) == 0
    assert [e.key for e in await store.events_about(message_id="m-1")] == ["fetched|m-1|H53"]
    assert await store.events_about(message_id="m-9") == []


async def test_delivery_events_commit_with_the_mailbox_rows(store: Store) -> None:
    await store.commit_intake(intake(b"<a/>", message_id="m-1"))
    rows = await store.pending_outbox(10)
    assert (rows[0].sender, rows[0].level, rows[0].kind) == ("000.00.00.G22", "strict", "edoc")
    delivered = event(
        EventKind.DELIVERED,
        "delivered|m-1|n",
        message_id="m-1",
        detail={"recipients": ["000.00.00.H53"]},
        report_to="central",
    )
    await store.finish_outbox([("000.00.00.H53", "m-1")], [rows[0].id], events=[delivered])
    assert [e.kind for e in await store.events_about(message_id="m-1")] == [EventKind.DELIVERED]


async def test_reports_wait_until_marked_and_keep_their_destination(store: Store) -> None:
    await store.record_events(
        [
            event(EventKind.DELIVERED, "d|1", report_to="central", message_id="m-1"),
            event(EventKind.STATUS, "s|1"),  # kept here: nothing to report
            event(EventKind.FETCHED, "f|1", 1, report_to="province-h41", message_id="m-1"),
        ]
    )
    pending = list(await store.pending_reports(10))
    assert [(e.key, e.report_to) for _, e in pending] == [
        ("d|1", "central"),
        ("f|1", "province-h41"),
    ]
    await store.mark_reported([pending[0][0]])
    assert [e.key for _, e in await store.pending_reports(10)] == ["f|1"]


async def test_the_log_is_searched_by_party_and_time(store: Store) -> None:
    await store.record_events(
        [
            event(EventKind.ACCEPTED, "a|1", 0, sender="000.00.00.G22", message_id="m-1"),
            event(EventKind.DELIVERED, "d|1", 60, party="000.00.00.H53", message_id="m-1"),
            event(EventKind.STATUS, "s|1", 120, party="000.00.00.H53", document_id="D-1"),
            event(EventKind.ACCEPTED, "a|2", 180, sender="000.00.00.G14", message_id="m-2"),
        ]
    )
    by_party = await store.log_entries(party="000.00.00.H53")
    assert [e.event.key for e in by_party] == ["d|1", "s|1"]
    window = await store.log_entries(
        since=T0 + timedelta(minutes=30), until=T0 + timedelta(minutes=150)
    )
    assert [e.event.key for e in window] == ["d|1", "s|1"]
    # a time given in another zone means the same instant
    local = T0.astimezone(datetime.fromisoformat("2027-01-01T00:00+07:00").tzinfo)
    assert [e.event.key for e in await store.log_entries(party="000.00.00.G22", since=local)] == [
        "a|1"
    ]


async def test_a_revoke_withdraws_unfetched_mail_and_leaves_a_tombstone(store: Store) -> None:
    doc, g22, h53, h41 = (
        "000.00.00.G22,2026/11/20,125/UBND-VP",
        "000.00.00.G22",
        "000.00.00.H53",
        "000.00.00.H41",
    )
    await store.commit_intake(intake(b"<a/>", message_id="m-1", mailboxes=(h53, h41)))
    await store.commit_intake(  # a second package of the document: an update, say
        intake(b"<c/>", message_id="m-3", mailboxes=(h53,), business=BusinessType.UPDATE)
    )
    await store.commit_intake(  # the revoke itself is never withdrawn
        intake(b"<r/>", message_id="m-2", mailboxes=(h53, h41), business=BusinessType.REVOKE)
    )
    rows = await store.pending_outbox(10)
    await store.finish_outbox([(r.target, r.message_id) for r in rows], [r.id for r in rows])
    assert await store.mark_fetched(h41, ["m-1"]) == 1

    found = await store.withdraw(h53, doc, g22, "m-2", T0)
    assert [(w.message_id, w.outcome) for w in found] == [
        ("m-1", "withdrawn"),
        ("m-3", "withdrawn"),
    ]
    listed = await store.mailbox(h53, unfetched_only=False, limit=9)
    assert [e.message_id for e in listed] == ["m-2"]
    assert await store.mark_fetched(h53, ["m-1"]) == 0  # withdrawn mail stays withdrawn
    again = await store.withdraw(h53, doc, g22, "m-2", T0)
    assert [(w.message_id, w.outcome) for w in again] == [(w.message_id, w.outcome) for w in found]

    late = await store.withdraw(h41, doc, g22, "m-2", T0)
    assert [(w.message_id, w.outcome) for w in late] == [("m-1", "already fetched")]
    nothing_yet = await store.withdraw("000.00.00.G14", doc, g22, "m-2", T0)
    assert nothing_yet == []
    # a copy of the document arriving after the revoke is marked as revoked for them only
    await store.commit_intake(
        intake(
            b"<late/>",
            message_id="m-4",
            mailboxes=(h53, "000.00.00.G14", "000.00.00.H37"),
            business=BusinessType.UPDATE,
        )
    )
    marked = {r.target: r.revoked for r in await store.pending_outbox(10)}
    assert marked == {h53: True, "000.00.00.G14": True, "000.00.00.H37": False}
