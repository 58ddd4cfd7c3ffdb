"""Three linked node processes on the real RabbitMQ: province, district, commune."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.transport import Message
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration

PARENTS = {"province": None, "district": "province", "commune": "district"}
PROVINCE, DISTRICT_AGENCY, COMMUNE_AGENCY, OTHER_COMMUNE = (
    "000.00.00.H53",
    "000.00.31.H53",
    "000.21.31.H53",
    "000.20.31.H53",
)
HOMES = {
    PROVINCE: "province",
    DISTRICT_AGENCY: "district",
    OTHER_COMMUNE: "district",  # a commune hosted by its district
    COMMUNE_AGENCY: "commune",  # a commune with its own node
}


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[TreeProcesses]:
    processes = TreeProcesses(tmp_path, PARENTS, HOMES)
    yield processes
    await processes.cleanup()


def exactly_once(found: list[str], count: int) -> None:
    assert len(found) == count
    assert len(set(found)) == count, "a package is in a mailbox twice"


async def test_a_commune_reaches_its_province_and_a_neighbour_commune(tree: TreeProcesses) -> None:
    for name in PARENTS:
        tree.start(name)
    for name in PARENTS:
        await tree.ready(name)
    async with tree.client("commune") as client:
        (answer,) = await client.submit(
            [tree.signed(COMMUNE_AGENCY, [PROVINCE, OTHER_COMMUNE], 1)], as_organ=COMMUNE_AGENCY
        )
    assert answer.outcome == "accepted", answer
    assert await tree.wait_for_mailbox(PROVINCE, 1) == [answer.message_id]
    assert await tree.wait_for_mailbox(OTHER_COMMUNE, 1) == [answer.message_id]
    # and back down: the province writes to the commune with its own node
    async with tree.client("province") as client:
        (down,) = await client.submit(
            [tree.signed(PROVINCE, [COMMUNE_AGENCY], 2)], as_organ=PROVINCE
        )
    assert down.outcome == "accepted", down
    assert await tree.wait_for_mailbox(COMMUNE_AGENCY, 1) == [down.message_id]


async def test_kill_9_of_the_middle_node_in_mid_stream_loses_and_duplicates_nothing(
    tree: TreeProcesses,
) -> None:
    tree.start("province")
    tree.start("commune")
    middle = tree.start("district", crash_at="link-after-commit")
    for name in PARENTS:
        await tree.ready(name)
    packages = [tree.signed(COMMUNE_AGENCY, [PROVINCE], 100 + i) for i in range(6)]
    async with tree.client("commune") as client:
        for data in packages:
            await client.transport.publish(client.queues.inbound, Message(data), timeout=10)
    assert middle.wait(timeout=60) == -9, "the district died at the failpoint"
    tree.start("district")
    exactly_once(await tree.wait_for_mailbox(PROVINCE, 6, timeout=90), 6)
