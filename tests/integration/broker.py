"""Waiting on and cleaning up the real broker, for the process-level tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Iterable

import aio_pika

AMQP_URL = os.environ.get("LIENTHONG_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")


async def wait_for_consumers(
    queues: Iterable[str], count: int = 1, timeout: float = 60, url: str = AMQP_URL
) -> None:
    """Until each queue exists and has ``count`` consumers: the node is ready."""
    connection = await aio_pika.connect(url)
    async with connection, asyncio.timeout(timeout):
        for queue in queues:
            while True:
                channel = await connection.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                    if (declared.declaration_result.consumer_count or 0) >= count:
                        break
                except aio_pika.exceptions.ChannelClosed:
                    pass
                finally:
                    if not channel.is_closed:
                        await channel.close()
                await asyncio.sleep(0.2)


async def wait_for_count(
    read: Callable[[], Awaitable[list[str]]], count: int, timeout: float = 60
) -> list[str]:
    """``read()`` once it returns at least ``count`` items (a mailbox, polled: it lives in
    another process's store); a deadline, not a guess."""
    async with asyncio.timeout(timeout):
        while len(found := await read()) < count:  # noqa: ASYNC110 - polls another process
            await asyncio.sleep(0.2)
    return found


async def delete_queues(names: Iterable[str]) -> None:
    """Delete these queues, and these exchanges (a node's gate): each name as either."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        for name in names:
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.queue_delete(name)
            if name.endswith(".gate"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                    await channel.exchange_delete(name)


async def queue_depth(name: str) -> int:
    """How many messages wait in a queue now (ready, not yet delivered)."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(name, passive=True)
        return declared.declaration_result.message_count or 0
