"""The store's part of the bridge (docs/bridge.md), on both stores: a quarantined package
is kept but not routed until an operator decides, once; an upstream's ids stand for one
package each; the relay and a bridge each see only their own outbox rows."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore
from exchange.store import Destination, OutboxItem, Outcome
from tests.contract.stores import BACKENDS, drop_location, intake, new_location, open_store

pytestmark = pytest.mark.integration

Store = SqliteStore | PostgresStore
AT = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend: str = request.param
    where = new_location(backend, tmp_path)
    opened = open_store(backend, where)
    await opened.migrate()
    yield opened
    await opened.close()
    drop_location(backend, where)


async def test_a_held_package_is_kept_and_not_routed(store: Store) -> None:
    held = dataclasses.replace(
        intake(b"<held/>", message_id="m-q"), held="no signature", source="upstream:vdxp"
    )
    result = await store.commit_intake(held)
    assert result.outcome is Outcome.COMMITTED
    assert await store.pending_outbox(10) == []  # its outbox waits for the decision
    assert await store.package_bytes(held.package.digest) == b"<held/>"
    [listed] = await store.quarantined()
    assert (listed.message_id, listed.reason, listed.source, listed.decision) == (
        "m-q",
        "no signature",
        "upstream:vdxp",
        None,
    )
    assert listed.sender == "000.00.00.G22"


async def test_a_release_routes_it_once_and_a_second_decision_changes_nothing(
    store: Store,
) -> None:
    await store.commit_intake(dataclasses.replace(intake(b"<h/>", message_id="m-q"), held="why"))
    route = [OutboxItem(Destination.MAILBOX, "000.00.00.H53")]
    assert await store.decide_quarantined(
        "m-q", "released", by="ops-an", at=AT, note="checked by phone", outbox=route
    )
    assert [r.target for r in await store.pending_outbox(10)] == ["000.00.00.H53"]
    assert not await store.decide_quarantined("m-q", "rejected", by="ops-binh", at=AT)
    assert not await store.decide_quarantined("m-unknown", "released", by="ops-an", at=AT)
    assert await store.quarantined() == []
    [decided] = await store.quarantined(decided=True)
    assert (decided.decision, decided.decided_by, decided.note) == (
        "released",
        "ops-an",
        "checked by phone",
    )
    assert decided.decided_at == AT
    assert len(await store.pending_outbox(10)) == 1


async def test_a_rejected_package_is_never_routed(store: Store) -> None:
    await store.commit_intake(dataclasses.replace(intake(b"<r/>", message_id="m-r"), held="why"))
    assert await store.decide_quarantined("m-r", "rejected", by="ops-an", at=AT, note="forged")
    assert await store.pending_outbox(10) == []
    found = await store.held_package("m-r")
    assert found is not None
    assert found.decision == "rejected"
    assert await store.held_package("m-none") is None


async def test_an_upstream_doc_id_stands_for_the_first_package_recorded(store: Store) -> None:
    await store.commit_intake(intake(b"<a/>", message_id="m-1"))
    assert await store.link_upstream("vdxp", "in", "5bebcfeff858e3e0cc154762", "m-1", AT) == "m-1"
    again = await store.link_upstream("vdxp", "in", "5bebcfeff858e3e0cc154762", "m-2", AT)
    assert again == "m-1"
    assert await store.upstream_message("vdxp", "in", "5bebcfeff858e3e0cc154762") == "m-1"
    assert await store.upstream_message("vdxp", "out", "5bebcfeff858e3e0cc154762") is None
    assert await store.upstream_message("lgsp", "in", "5bebcfeff858e3e0cc154762") is None
    await store.link_upstream("vdxp", "out", "68edb8c8c2dcb14db773ce44", "m-1", AT)
    links = await store.upstream_links("m-1")
    assert [(x.upstream, x.direction, x.doc_id) for x in links] == [
        ("vdxp", "in", "5bebcfeff858e3e0cc154762"),
        ("vdxp", "out", "68edb8c8c2dcb14db773ce44"),
    ]


async def test_the_relay_and_a_bridge_each_take_only_their_rows(store: Store) -> None:
    await store.commit_intake(
        intake(
            b"<p/>",
            message_id="m-1",
            links=("upstream:vdxp/normal", "upstream:lgsp/normal", "h53/normal"),
        )
    )
    relay = await store.pending_outbox(10, skip_prefix="upstream:")
    assert sorted(r.target for r in relay) == ["000.00.00.H53", "h53/normal"]
    bridge = await store.pending_outbox(10, only_prefix="upstream:vdxp/")
    assert [r.target for r in bridge] == ["upstream:vdxp/normal"]
    blocked = await store.pending_outbox(
        10, only_prefix="upstream:vdxp/", skip_targets=["upstream:vdxp/normal"]
    )
    assert blocked == []
    assert len(await store.pending_outbox(10)) == 4
