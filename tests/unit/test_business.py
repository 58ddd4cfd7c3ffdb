"""Revoke, update and replace across the memory tree: what each recipient's mailbox holds
afterwards, and what the sender's node says happened at each."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from exchange.node import Node
from exchange.signing import sign
from exchange.status_view import DocumentStatus, document_status
from tests.conftest import example
from tests.pki import G22, DevPki
from tests.unit.memory_tree import COMMUNE, H41, Tree, document

H53 = "000.00.00.H53"
FINAL_OR_DELIVERED = ("delivered", "fetched", "failed")


def about(number: int) -> bytes:
    return f"000.00.00.G22,2026/11/20,{number}/UBND-VP".encode()


def business(pki: DevPki, name: str, number: int) -> bytes:
    """An example revoke / update / replace from G22, about document ``number``."""
    data = example(name).replace(b"000.00.00.G22,2026/11/18,120/UBND-VP", about(number))
    return sign(data, pki.key(G22))


async def unfetched(tree: Tree, organ: str, home: str) -> list[str]:
    store = tree.nodes[home].store
    return [e.message_id for e in await store.mailbox(organ, unfetched_only=True, limit=100)]


async def holds(tree: Tree, organ: str, home: str, want: list[str | None]) -> None:
    """Wait until the agency's unfetched mail is exactly ``want``."""
    async with asyncio.timeout(20):
        while await unfetched(tree, organ, home) != want:  # noqa: ASYNC110 - polls a store
            await asyncio.sleep(0.05)


async def settle(node: Node, ident: str, check: object) -> DocumentStatus:
    async with asyncio.timeout(20):
        while True:
            seen = await document_status(
                node.store,
                ident,
                here=node.settings.node_id,
                topology=node.settings.topology,
                now=datetime.now(UTC),
            )
            if seen is not None and check(seen):  # type: ignore[operator]
                return seen
            await asyncio.sleep(0.05)


def rows(view: DocumentStatus) -> dict[str, tuple[str, str | None, str | None]]:
    return {r.recipient: (r.transport, r.reason, r.note) for r in view.recipients}


async def test_a_revoke_withdraws_what_was_not_fetched_and_says_what_it_found(
    tree: Tree, pki: DevPki
) -> None:
    central = tree.nodes["central"]
    original = await tree.submit("central", document(pki, G22, H53, COMMUNE, 120))
    assert original.outcome == "accepted", original
    await tree.wait(H53)
    await tree.wait(COMMUNE)
    assert (
        await tree.nodes["commune-21-31-h53"].acknowledge(COMMUNE, [str(original.message_id)]) == 1
    )

    revoke = await tree.submit("central", business(pki, "document-revoke.edxml", 120))
    assert revoke.outcome == "accepted", revoke
    # the province never fetched it: it is gone from its mailbox, and the revoke is there
    await holds(tree, H53, "province-h53", [revoke.message_id])
    # the commune's fetched receipt travels back on its own: wait until both rows are final
    view = await settle(
        central,
        str(original.message_id),
        lambda v: rows(v)[H53][0] == "failed" and rows(v)[COMMUNE][0] in ("fetched", "failed"),
    )
    assert rows(view)[COMMUNE][0] == "fetched"  # too late to withdraw: it stays fetched
    assert "revoked by its sender" in str(rows(view)[H53][1])
    # the revoke's own view says what it found at each recipient
    told = await settle(
        central, str(revoke.message_id), lambda v: all(r.note for r in v.recipients)
    )
    assert rows(told)[H53][2] == f"{original.message_id}: withdrawn"
    assert rows(told)[COMMUNE][2] == f"{original.message_id}: already fetched"


async def test_a_revoke_that_overtakes_its_document_keeps_it_from_being_delivered(
    tree: Tree, pki: DevPki
) -> None:
    central = tree.nodes["central"]
    revoke = await tree.submit("central", business(pki, "document-revoke.edxml", 121))
    assert revoke.outcome == "accepted", revoke
    await tree.wait(H53)  # the revoke arrived, with nothing to withdraw yet
    told = await settle(
        central, str(revoke.message_id), lambda v: all(r.note for r in v.recipients)
    )
    assert rows(told)[H53][2] == "not arrived yet: it will not be delivered"

    late = await tree.submit("central", document(pki, G22, H53, COMMUNE, 121))
    assert late.outcome == "accepted", late
    view = await settle(
        central, str(late.message_id), lambda v: all(r.transport == "failed" for r in v.recipients)
    )
    assert rows(view)[H53][1] == "revoked by its sender before it arrived"
    assert await unfetched(tree, H53, "province-h53") == [revoke.message_id]
    assert await unfetched(tree, COMMUNE, "commune-21-31-h53") == [revoke.message_id]


async def test_an_update_reaches_an_added_recipient_and_is_withdrawn_from_a_removed_one(
    tree: Tree, pki: DevPki
) -> None:
    central = tree.nodes["central"]
    original = await tree.submit("central", document(pki, G22, H53, COMMUNE, 120))
    await tree.wait(COMMUNE)
    await tree.wait(H53)
    update = await tree.submit("central", business(pki, "document-update.edxml", 120))
    assert update.outcome == "accepted", update
    # added: H41 gets the update, through the normal route from the sender's node
    assert await tree.wait(H41) == [update.message_id]
    # kept: H53 has both; removed: the commune has neither
    await holds(tree, H53, "province-h53", [original.message_id, update.message_id])
    # H53's delivered receipt travels back on its own: wait until it is in too
    view = await settle(
        central,
        str(original.message_id),
        lambda v: rows(v)[COMMUNE][0] == "failed" and rows(v)[H53][0] in FINAL_OR_DELIVERED,
    )
    assert await unfetched(tree, COMMUNE, "commune-21-31-h53") == []
    assert rows(view)[H53][0] == "delivered"


async def test_a_replacement_is_found_from_the_document_it_replaces(
    tree: Tree, pki: DevPki
) -> None:
    central = tree.nodes["central"]
    original = await tree.submit("central", document(pki, G22, H53, COMMUNE, 120))
    replacement = await tree.submit("central", business(pki, "document-replace.edxml", 120))
    assert replacement.outcome == "accepted", replacement
    view = await settle(central, str(original.message_id), lambda v: bool(v.replaced_by))
    assert view.replaced_by == ("000.00.00.G22,2026/11/20,129/UBND-VP",)
