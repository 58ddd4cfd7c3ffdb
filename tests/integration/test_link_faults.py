"""Links that fail between node processes on the real RabbitMQ (DESIGN §4, links): a link
cut, slow, or dead without a word; a child offline until its lane is full; an urgent
package behind a backlog. What the agencies see: every package once, nothing lost, the
urgent one first.

The commune's link to its district goes through a fault proxy (tests/faultproxy.py); every
other connection goes to the broker directly.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from adapters.transport_amqp import AmqpTransport
from exchange.links import down_queue
from exchange.node import Answer
from exchange.transport import Message, PublishFailed, QueueSpec
from tests.faultproxy import Direction, FaultProxy
from tests.integration.broker import AMQP_URL, delete_queues, queue_depth
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration

PARENTS = {
    "province": None,
    "district": "province",
    "commune": "district",
    "neighbour": "district",
}
PROVINCE, DISTRICT_AGENCY, COMMUNE_AGENCY, NEIGHBOUR_AGENCY = (
    "000.00.00.H53",
    "000.00.31.H53",
    "000.21.31.H53",
    "000.20.31.H53",
)
HOMES = {
    PROVINCE: "province",
    DISTRICT_AGENCY: "district",
    COMMUNE_AGENCY: "commune",
    NEIGHBOUR_AGENCY: "neighbour",
}
HEARTBEAT_S = 2  # a dead link is given up after about (2 + 1) x 3 s without a frame
PUBLISH_TIMEOUT_S = 2.0
LINK_MAX_BYTES = 48 * 1024  # a test may ask for another: parametrize link_max_bytes
PACKAGE_BYTES = 10 * 1024  # four of them fill such a lane


@pytest.fixture
async def proxy() -> AsyncIterator[FaultProxy]:
    broker = urlsplit(AMQP_URL)
    async with FaultProxy(broker.hostname or "127.0.0.1", broker.port or 5672) as started:
        yield started


@pytest.fixture
def link_max_bytes() -> int:
    return LINK_MAX_BYTES


@pytest.fixture
async def tree(
    tmp_path: Path, proxy: FaultProxy, link_max_bytes: int
) -> AsyncIterator[TreeProcesses]:
    processes = TreeProcesses(
        tmp_path,
        PARENTS,
        HOMES,
        link_urls={"commune": proxy.url(AMQP_URL)},
        link_max_bytes=link_max_bytes,
        link_heartbeat_s=HEARTBEAT_S,
        publish_timeout_s=PUBLISH_TIMEOUT_S,
    )
    yield processes
    await processes.cleanup()


async def until(check: Callable[[], bool | Awaitable[bool]], what: str, timeout: float) -> None:
    """Poll ``check`` (state in other processes, or the proxy) until it holds; fail after
    ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                found = check()
                if await found if inspect.isawaitable(found) else found:
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout} s")


def exactly_once(found: list[str], sent: list[Answer]) -> None:
    assert all(a.outcome == "accepted" for a in sent), sent
    assert len(found) == len(set(found)), "a package is in a mailbox twice"
    assert sorted(found) == sorted(str(a.message_id) for a in sent)


async def start(tree: TreeProcesses, *names: str) -> None:
    for name in names:
        tree.start(name)
    for name in names:
        await tree.ready(name)


async def send(
    tree: TreeProcesses, sender: str, recipient: str, numbers: range, **options: int
) -> list[Answer]:
    """Signed documents from ``sender`` to ``recipient``, submitted at the sender's node."""
    async with tree.client(HOMES[sender]) as client:
        return await client.submit(
            [tree.signed(sender, [recipient], n, **options) for n in numbers], as_organ=sender
        )


async def flowing_up(tree: TreeProcesses) -> list[Answer]:
    """Commune -> district -> province, with packages on their way: sent, and the first
    arrived."""
    await start(tree, "province", "district", "commune")
    sent = await send(tree, COMMUNE_AGENCY, PROVINCE, range(100, 124))
    await until(lambda: has(tree, PROVINCE, 1), "the first package up the link", 20)
    return sent


async def has(tree: TreeProcesses, organ: str, count: int) -> bool:
    return len(await tree.mailbox(organ)) >= count


async def holds(queue: str, count: int) -> bool:
    return await queue_depth(queue) == count


async def filled(queue: str, sent: int) -> bool:
    """The lane refuses more: it holds some of what was sent, the same for a second."""
    before = await queue_depth(queue)
    await asyncio.sleep(1.0)
    return 0 < before == await queue_depth(queue) < sent


async def test_a_cut_link_loses_and_duplicates_nothing(
    tree: TreeProcesses, proxy: FaultProxy
) -> None:
    sent = await flowing_up(tree)
    proxy.cut()
    sent += await send(tree, COMMUNE_AGENCY, PROVINCE, range(200, 212))
    await until(lambda: proxy.refused > 0, "the commune dials its parent again", 15)
    assert len(await tree.mailbox(PROVINCE)) < len(sent), "the cut held packages back"
    proxy.restore()
    exactly_once(await tree.wait_for_mailbox(PROVINCE, len(sent), timeout=30), sent)


async def test_a_slow_link_loses_and_duplicates_nothing_even_past_publish_deadlines(
    tree: TreeProcesses, proxy: FaultProxy
) -> None:
    sent = await flowing_up(tree)
    proxy.delay(200)
    sent += await send(tree, COMMUNE_AGENCY, PROVINCE, range(200, 206))
    # a spike: confirms come after the deadline, so what the broker took is sent again
    proxy.delay(PUBLISH_TIMEOUT_S * 1000 * 0.75)
    sent += await send(tree, COMMUNE_AGENCY, PROVINCE, range(300, 303))
    await asyncio.sleep(PUBLISH_TIMEOUT_S * 2)  # the spike lasts this long
    proxy.delay(200)
    exactly_once(await tree.wait_for_mailbox(PROVINCE, len(sent), timeout=30), sent)


@pytest.mark.parametrize(
    "directions",
    [(Direction.UP, Direction.DOWN), (Direction.DOWN,), (Direction.UP,)],
    ids=["blackhole", "half-open-down", "half-open-up"],
)
async def test_a_link_dead_without_a_word_is_given_up_and_opened_again(
    tree: TreeProcesses, proxy: FaultProxy, directions: tuple[Direction, ...]
) -> None:
    sent = await flowing_up(tree)
    proxy.half_open(*directions)  # the link's connections stay dead after the restore
    sent += await send(tree, COMMUNE_AGENCY, PROVINCE, range(200, 212))
    await asyncio.sleep(HEARTBEAT_S * 2)  # the fault lasts longer than a heartbeat
    dialled = proxy.accepted
    proxy.restore()
    await until(
        lambda: proxy.accepted > dialled,
        "the commune gives the dead link up and dials again",
        (HEARTBEAT_S + 1) * 3 + 10,
    )
    exactly_once(await tree.wait_for_mailbox(PROVINCE, len(sent), timeout=30), sent)


async def test_a_publish_on_a_link_found_dead_fails_and_leaves_its_caller_running(
    proxy: FaultProxy,
) -> None:
    """aiormq cancels what waits on a connection it finds dead; the relay that waited
    must hear a failed publish (and try again later), not be cancelled itself."""
    transport = AmqpTransport(proxy.url(AMQP_URL), heartbeat_s=1)
    queue = f"lienthong.test.{uuid.uuid4().hex[:12]}"
    try:
        await transport.connect()
        await transport.declare(QueueSpec(queue))
        proxy.blackhole()
        with pytest.raises(PublishFailed):
            async with asyncio.timeout(20):  # the publish's deadline is later still
                await transport.publish(queue, Message(b"lost"), timeout=30)
    finally:
        proxy.cut()
        await transport.close()
        await delete_queues([queue])


async def test_an_offline_child_fills_its_lane_loses_nothing_and_blocks_no_other_link(
    tree: TreeProcesses,
) -> None:
    await start(tree, "district", "commune", "neighbour")
    await tree.stopped("commune")
    lane = down_queue(tree.ids["district"], tree.ids["commune"], "normal")
    sent = await send(tree, DISTRICT_AGENCY, COMMUNE_AGENCY, range(300, 310), size=PACKAGE_BYTES)
    # each message is a package and its envelope: a few of them fill the lane, the rest wait
    await until(lambda: filled(lane, len(sent)), "the offline commune's lane is full", 20)
    fits = await queue_depth(lane)
    assert 0 < fits * PACKAGE_BYTES <= LINK_MAX_BYTES, "the lane took no more than its bound"
    other = await send(tree, DISTRICT_AGENCY, NEIGHBOUR_AGENCY, range(400, 401))
    exactly_once(await tree.wait_for_mailbox(NEIGHBOUR_AGENCY, 1, timeout=20), other)
    assert await queue_depth(lane) == fits, "a full lane stays full"
    tree.start("commune")
    exactly_once(await tree.wait_for_mailbox(COMMUNE_AGENCY, len(sent), timeout=30), sent)


@pytest.mark.parametrize("link_max_bytes", [1024 * 1024])  # the whole backlog waits in the lane
async def test_an_urgent_package_overtakes_the_backlog_of_an_offline_child(
    tree: TreeProcesses,
) -> None:
    await start(tree, "district", "commune")
    await tree.stopped("commune")
    backlog = await send(tree, DISTRICT_AGENCY, COMMUNE_AGENCY, range(500, 540))
    (urgent,) = await send(tree, DISTRICT_AGENCY, COMMUNE_AGENCY, range(600, 601), priority=3)
    district, commune = tree.ids["district"], tree.ids["commune"]

    async def both_waiting() -> bool:  # the urgent one is published after the backlog
        return await holds(down_queue(district, commune, "normal"), len(backlog)) and (
            await holds(down_queue(district, commune, "urgent"), 1)
        )

    await until(both_waiting, "the backlog waits in the normal lane, the urgent one in its", 20)
    tree.start("commune")
    await tree.wait_for_mailbox(COMMUNE_AGENCY, len(backlog) + 1, timeout=30)
    delivered = {e.message_id: e.delivered_at for e in await tree.mailbox_entries(COMMUNE_AGENCY)}
    first = delivered[str(urgent.message_id)]
    behind = sum(delivered[str(a.message_id)] > first for a in backlog)
    assert behind > len(backlog) // 2, f"{len(backlog) - behind} of the backlog came first"


async def test_a_child_started_while_its_link_is_cut_waits_for_it(
    tree: TreeProcesses, proxy: FaultProxy
) -> None:
    proxy.cut()
    await start(tree, "province", "district")
    tree.start("commune")
    await tree.ready_inbound("commune")
    sent = await send(tree, COMMUNE_AGENCY, PROVINCE, range(100, 106))
    await until(lambda: proxy.refused > 1, "the commune dials its parent again", 15)
    proxy.restore()
    exactly_once(await tree.wait_for_mailbox(PROVINCE, len(sent), timeout=30), sent)
