"""The route and sizes scenarios' baselines: one raw aio-pika process per hop.

``python -m bench.forwarder IN OUT``: consume ``IN`` (manual acks, bounded prefetch), one
message at a time: publish it to ``OUT`` (persistent, mandatory, publisher confirm
awaited), then acknowledge it. The message id and headers go along.

``python -m bench.forwarder IN OUT --verify CA``: a naive verifying forwarder: the same,
after the admission baseline of bench/admission.py (hardened parse, structural XSD,
attachments decoded, signxml verify chained to ``CA``) in a thread. A package that fails
it stops the process (the benchmark then stops with the process's log): every package
offered is meant to pass.

``python -m bench.forwarder IN --sink DB``: the last hop: insert each message into an
SQLite table (WAL, ``synchronous = FULL``: every commit is fsynced), then acknowledge.

No parsing, no signatures, no store of its own on the way: what a route costs at least.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import aio_pika

from bench.admission import baseline
from bench.tree import AMQP_URL

PREFETCH = 32


async def forward(source: str, target: str, ca_file: str | None = None) -> None:
    loop = asyncio.get_running_loop()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        inbound = await connection.channel()
        await inbound.set_qos(prefetch_count=PREFETCH)
        outbound = await connection.channel(publisher_confirms=True)
        queue = await inbound.declare_queue(source, durable=True)
        await outbound.declare_queue(target, durable=True)
        async with queue.iterator() as messages:
            async for message in messages:
                if ca_file is not None:
                    await loop.run_in_executor(None, baseline, message.body, ca_file)
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


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarder", description=__doc__)
    parser.add_argument("source", metavar="IN")
    parser.add_argument("target", metavar="OUT", nargs="?")
    parser.add_argument("--sink", metavar="DB", help="the last hop: insert into this SQLite file")
    parser.add_argument("--verify", metavar="CA", help="verify each package first")
    args = parser.parse_args()
    if (args.target is None) == (args.sink is None) or (args.sink and args.verify):
        parser.error("give OUT (and perhaps --verify CA), or --sink DB")
    if args.sink:
        asyncio.run(sink(args.source, args.sink))
    else:
        asyncio.run(forward(args.source, args.target, args.verify))


if __name__ == "__main__":
    main()
