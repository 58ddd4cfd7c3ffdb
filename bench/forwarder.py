"""The route scenario's baseline: one raw aio-pika process per hop.

``python -m bench.forwarder IN OUT``: consume ``IN`` (manual acks, bounded prefetch), one
message at a time: publish it to ``OUT`` (persistent, mandatory, publisher confirm
awaited), then acknowledge it. The message id and headers go along.

``python -m bench.forwarder IN --sink DB``: the last hop: insert each message into an
SQLite table (WAL, ``synchronous = FULL``: every commit is fsynced), then acknowledge.

No parsing, no signatures, no store of its own on the way: what a route costs at least.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor

import aio_pika

from bench.tree import AMQP_URL

PREFETCH = 32


async def forward(source: str, target: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        inbound = await connection.channel()
        await inbound.set_qos(prefetch_count=PREFETCH)
        outbound = await connection.channel(publisher_confirms=True)
        queue = await inbound.declare_queue(source, durable=True)
        await outbound.declare_queue(target, durable=True)
        async with queue.iterator() as messages:
            async for message in messages:
                await outbound.default_exchange.publish(
                    aio_pika.Message(
                        message.body,
                        message_id=message.message_id,
                        headers=message.headers,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=target,
                    mandatory=True,
                    timeout=10,
                )
                await message.ack()


async def sink(source: str, path: str) -> None:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE IF NOT EXISTS delivered (key TEXT PRIMARY KEY, data BLOB NOT NULL, "
        "at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    writer = ThreadPoolExecutor(max_workers=1)  # one connection, one writer thread
    loop = asyncio.get_running_loop()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.declare_queue(source, durable=True)
        async with queue.iterator() as messages:
            async for message in messages:
                await loop.run_in_executor(
                    writer, _insert, db, message.message_id or "", message.body
                )
                await message.ack()


def _insert(db: sqlite3.Connection, key: str, body: bytes) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT OR IGNORE INTO delivered (key, data) VALUES (?, ?)", (key, body))
    db.execute("COMMIT")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--sink":
        asyncio.run(sink(sys.argv[1], sys.argv[3]))
    elif len(sys.argv) == 3:
        asyncio.run(forward(sys.argv[1], sys.argv[2]))
    else:
        raise SystemExit("usage: python -m bench.forwarder IN (OUT | --sink DB)")
