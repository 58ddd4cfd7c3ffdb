"""The baselines of the intake scenario, each a small RabbitMQ consumer process.

``python -m bench.servers raw QUEUE DB``: (a) consume, insert the bytes into SQLite
(synchronous=FULL, so each commit is fsynced), acknowledge, answer.
``python -m bench.servers naive QUEUE DB CA``: (b) the same, after the admission baseline of
bench/admission.py (hardened parse, structural XSD, attachment decoding, signxml verify).

Both answer on ``reply_to`` like the node does, so the load generator measures all three
the same way: from publish to answer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aio_pika

from bench.admission import baseline

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def serve(
    kind: str, queue_name: str, db_path: str, ca_file: str | None, prefetch: int = 32
) -> None:
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    writer = ThreadPoolExecutor(max_workers=1)  # one connection, one writer thread
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute("CREATE TABLE IF NOT EXISTS packages (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=prefetch)
    queue = await channel.declare_queue(queue_name, durable=True)
    loop = asyncio.get_running_loop()
    async with queue.iterator() as messages:
        async for message in messages:
            body = message.body
            if kind == "naive":
                assert ca_file is not None
                await loop.run_in_executor(None, baseline, body, ca_file)
            await loop.run_in_executor(writer, _insert, db, body)
            await message.ack()
            if message.reply_to:
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        json.dumps({"outcome": "accepted"}).encode(),
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                )


def _insert(db: sqlite3.Connection, body: bytes) -> None:
    db.execute("BEGIN IMMEDIATE")
    db.execute("INSERT INTO packages (data) VALUES (?)", (body,))
    db.execute("COMMIT")


if __name__ == "__main__":
    kind, queue_name, db_path = sys.argv[1:4]
    ca = sys.argv[4] if len(sys.argv) > 4 else None
    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(kind, queue_name, db_path, ca))
