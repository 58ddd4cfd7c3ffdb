"""What a node takes from a neighbour's report batch: only what that neighbour's side of
the tree can know, bound for this node or onwards away from it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from adapters.store_sqlite import SqliteStore
from exchange.envelope import NodeKey
from exchange.errors import EnvelopeInvalid
from exchange.evidence import Event, EventKind
from exchange.report_relay import ReportRelay
from exchange.reporting import seal_reports
from exchange.topology import Topology
from tests.unit.test_topology import HOMES, PARENTS

AT = datetime(2027, 2, 2, 3, 0, tzinfo=UTC)
KEYS = {n: NodeKey(n, ec.generate_private_key(ec.SECP256R1())) for n in PARENTS}


@pytest.fixture
async def district(tmp_path: Path) -> AsyncIterator[ReportRelay]:
    store = SqliteStore(tmp_path / "district")
    await store.migrate()

    async def send(_neighbour: str, _body: bytes) -> None:
        return None

    topology = Topology(PARENTS, HOMES)
    yield ReportRelay(
        "district-31-h53",
        store=store,
        key=KEYS["district-31-h53"],
        send=send,
        topology=lambda: topology,
        peer_keys=lambda: {n: k.key.public_key() for n, k in KEYS.items()},
    )
    await store.close()


def fact(kind: EventKind, node: str, to: str | None, key: str, **fields: object) -> Event:
    return Event(kind, key, AT, node, message_id="m-1", report_to=to, **fields)  # type: ignore[arg-type]


async def test_a_child_reports_what_its_side_did_and_nothing_else(district: ReportRelay) -> None:
    commune = "commune-21-31-h53"
    batch = seal_reports(
        KEYS[commune],
        [
            fact(
                EventKind.DELIVERED,
                commune,
                "central",
                "ok-delivered",
                detail={"recipients": ["000.21.31.H53"]},
            ),
            fact(
                EventKind.FETCHED, commune, "district-31-h53", "ok-fetched", party="000.21.31.H53"
            ),
            # a status is not a report: statuses travel as signed packages
            fact(
                EventKind.STATUS,
                commune,
                "central",
                "status",
                party="000.00.00.H41",
                detail={"code": "06"},
            ),
            # a fetch at a node the commune does not speak for
            fact(EventKind.FETCHED, "province-h41", "central", "elsewhere", party="000.00.00.H41"),
            # bound back down to the commune's own subtree
            fact(EventKind.FAILED, commune, commune, "bounce", detail={"reason": "x"}),
        ],
    )
    sender, added = await district.take(batch)
    assert (sender, added) == (commune, 2)
    kept = {e.key: e.report_to for e in await district.store.events_about(message_id="m-1")}
    assert kept == {"ok-delivered": "central", "ok-fetched": None}  # onwards, or arrived


async def test_from_the_parent_only_what_happened_above(district: ReportRelay) -> None:
    batch = seal_reports(
        KEYS["province-h53"],
        [
            fact(
                EventKind.DELIVERED,
                "province-h41",
                "commune-21-31-h53",
                "ok",
                detail={"recipients": ["000.00.00.H41"]},
            ),
            fact(
                EventKind.FETCHED,
                "district-31-h53",
                "commune-21-31-h53",
                "mine",
                party="000.00.00.H41",
            ),
        ],
    )
    assert (await district.take(batch))[1] == 1


async def test_a_batch_not_signed_by_a_neighbour_is_refused_whole(district: ReportRelay) -> None:
    batch = seal_reports(
        KEYS["province-h41"],
        [fact(EventKind.DELIVERED, "province-h41", "commune-21-31-h53", "x", detail={})],
    )
    with pytest.raises(EnvelopeInvalid, match="not a neighbour"):
        await district.take(batch)
    not_records = seal_reports(KEYS["commune-21-31-h53"], []).replace(
        b'"reports":[]', b'"reports":[{"to":null,"event":"x"}]'
    )
    with pytest.raises(EnvelopeInvalid):  # the signature no longer holds, or it does not parse
        await district.take(not_records)


async def test_the_store_is_asked_again_every_recheck_s_though_nothing_was_noted(
    tmp_path: Path,
) -> None:
    """Another service instance sharing the store may have recorded reports, or left its
    own: the relay asks the store now and then even when this process noted nothing."""
    asked: list[int] = []

    class Counting(SqliteStore):
        async def pending_reports(
            self, limit: int, *, skip_to: Collection[str] = ()
        ) -> Sequence[tuple[int, Event]]:
            asked.append(limit)
            return await super().pending_reports(limit, skip_to=skip_to)

    async def send(_neighbour: str, _body: bytes) -> None:
        return None

    store = Counting(tmp_path / "district")
    await store.migrate()
    now = [100.0]
    relay = ReportRelay(
        "district-31-h53",
        store=store,
        key=KEYS["district-31-h53"],
        send=send,
        topology=lambda: Topology(PARENTS, HOMES),
        peer_keys=dict,
        recheck_s=30.0,
        clock=lambda: now[0],
    )
    try:
        await relay.relay_once()
        assert len(asked) == 1  # at start, it looks
        now[0] += 29.9
        await relay.relay_once()
        assert len(asked) == 1  # nothing noted since: not asked
        relay.note([fact(EventKind.FETCHED, "district-31-h53", "central", "k", party="x")])
        await relay.relay_once()
        assert len(asked) == 2  # something bound elsewhere noted: asked at once
        now[0] += 30.0
        await relay.relay_once()
        assert len(asked) == 3  # recheck_s passed: asked though nothing was noted
    finally:
        await store.close()
