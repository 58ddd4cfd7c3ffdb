"""Receipts and statuses across node processes on the real RabbitMQ: a refusal, a recall
asked and refused, and a copy that expires while its link is held down, as the sender's
node reports them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.client import NodeClient
from adapters.sandbox_lifecycle import status_package
from tests.integration.test_tree_process import (
    COMMUNE_AGENCY,
    HOMES,
    OTHER_COMMUNE,
    PARENTS,
    PROVINCE,
)
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration


async def states(
    client: NodeClient, sender: str, ident: str, want: dict[str, tuple[str, str | None]]
) -> dict[str, Any]:
    """The sender's view, once every named recipient is (transport, recall or status)."""
    deadline = time.monotonic() + 60
    while True:
        view = await client.status(sender, ident)
        rows = {r["recipient"]: r for r in view["recipients"]}
        seen = {
            organ: (rows[organ]["transport"], rows[organ]["recall"] or rows[organ]["status"])
            for organ in want
        }
        if seen == want:
            return rows
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.2)


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[TreeProcesses]:
    processes = TreeProcesses(tmp_path, PARENTS, HOMES)
    yield processes
    await processes.cleanup()


async def test_a_refusal_and_a_refused_recall_reach_the_sender(tree: TreeProcesses) -> None:
    for name in PARENTS:
        tree.start(name)
    for name in PARENTS:
        await tree.ready(name)
    doc = f"{COMMUNE_AGENCY},2026/11/20,7/UBND-VP"
    async with tree.client("commune") as at_sender:
        (sent,) = await at_sender.submit(
            [tree.signed(COMMUNE_AGENCY, [PROVINCE, OTHER_COMMUNE], 7)], as_organ=COMMUNE_AGENCY
        )
        assert sent.outcome == "accepted", sent
        await states(
            at_sender,
            COMMUNE_AGENCY,
            doc,
            {PROVINCE: ("delivered", None), OTHER_COMMUNE: ("delivered", None)},
        )
        # the province refuses it (02); the other commune registers it (01, 03)
        async with tree.client("province") as at_province:
            (answer,) = await at_province.submit(
                [status_package(tree.key(PROVINCE), "02", COMMUNE_AGENCY, PROVINCE, 7)],
                as_organ=PROVINCE,
            )
            assert answer.outcome == "accepted", answer
        async with tree.client("district") as at_district:
            for code in ("01", "03"):
                (answer,) = await at_district.submit(
                    [
                        status_package(
                            tree.key(OTHER_COMMUNE), code, COMMUNE_AGENCY, OTHER_COMMUNE, 7
                        )
                    ],
                    as_organ=OTHER_COMMUNE,
                )
                assert answer.outcome == "accepted", answer
        rows = await states(
            at_sender,
            COMMUNE_AGENCY,
            str(sent.message_id),
            {PROVINCE: ("delivered", "02"), OTHER_COMMUNE: ("delivered", "03")},
        )
        assert rows[PROVINCE]["status_meaning"] == "refused"
        # the sender asks for it back (13) from both; the other commune refuses (16)
        (asked,) = await at_sender.submit(
            [status_package(tree.key(COMMUNE_AGENCY), "13", COMMUNE_AGENCY, OTHER_COMMUNE, 7)],
            as_organ=COMMUNE_AGENCY,
        )
        assert asked.outcome == "accepted", asked
        async with tree.client("district") as at_district:
            (answer,) = await at_district.submit(
                [status_package(tree.key(OTHER_COMMUNE), "16", COMMUNE_AGENCY, OTHER_COMMUNE, 7)],
                as_organ=OTHER_COMMUNE,
            )
            assert answer.outcome == "accepted", answer
        await states(
            at_sender,
            COMMUNE_AGENCY,
            doc,
            {PROVINCE: ("delivered", "13"), OTHER_COMMUNE: ("delivered", "16")},
        )


async def test_a_copy_whose_link_stays_down_expires_and_the_sender_is_told(
    tmp_path: Path,
) -> None:
    # the commune's link to its district points at a port where nothing listens
    tree = TreeProcesses(
        tmp_path,
        PARENTS,
        HOMES,
        link_urls={"commune": "amqp://guest:guest@127.0.0.1:1/"},
        ttl_hours=3 / 3600,  # three seconds
        publish_timeout_s=1.0,
    )
    try:
        tree.start("commune")
        await tree.ready_inbound("commune")
        async with tree.client("commune") as at_sender:
            (sent,) = await at_sender.submit(
                [tree.signed(COMMUNE_AGENCY, [PROVINCE], 8)], as_organ=COMMUNE_AGENCY
            )
            assert sent.outcome == "accepted", sent
            rows = await states(
                at_sender, COMMUNE_AGENCY, str(sent.message_id), {PROVINCE: ("failed", None)}
            )
        assert rows[PROVINCE]["reason"].startswith("expired: waited for link")
    finally:
        await tree.cleanup()
