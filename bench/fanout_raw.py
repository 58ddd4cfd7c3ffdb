"""The fan-out scenario's baseline: the same tree of nodes, built from raw aio-pika.

``python -m bench.fanout_raw PLAN PROCESS``: run the nodes of ``PLAN`` (JSON: the tree,
the agencies' home nodes, the queue and database of each node, which process runs it)
that belong to process ``PROCESS``, each an asyncio task, as ``lienthong serve`` packs
nodes. Each node, for every message on its queue, one at a time:

1. reads the To list of the package (lxml, the same hardened parser settings);
2. in one SQLite transaction (WAL, ``synchronous = FULL``: fsynced), writes a row for
   each recipient it hosts and a row for each copy it is about to send: one per child
   whose subtree hosts a recipient;
3. publishes those copies to the children's queues (persistent, mandatory, each confirm
   awaited), then acknowledges.

No signatures, envelopes, dedup, attempts or blobs: what a fan-out costs at least.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aio_pika
from lxml import etree

from bench.tree import AMQP_URL

PREFETCH = 32
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_TO = "{http://www.mic.gov.vn/TBT/QCVN_102_2016}"


def recipients_of(data: bytes) -> list[str]:
    root = etree.fromstring(data, _PARSER)
    return [o.text or "" for to in root.iter(f"{_TO}To") for o in to.iter(f"{_TO}OrganId")]


class RawNode:
    def __init__(self, node: str, plan: dict[str, Any]) -> None:
        self.node = node
        self.queue = plan["queues"][node]
        parents: dict[str, str | None] = plan["parents"]
        self.children = {c: plan["queues"][c] for c, p in parents.items() if p == node}
        self.hosted = {o for o, home in plan["homes"].items() if home == node}
        self.route: dict[str, str] = {}  # an agency below this node -> the child it is under
        for organ, home in plan["homes"].items():
            step: str | None = home
            while step is not None and parents[step] != node:
                step = parents[step]
            if step is not None:
                self.route[organ] = step
        self.db = sqlite3.connect(
            plan["databases"][node], isolation_level=None, check_same_thread=False
        )
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS mailbox (organ_id TEXT, key TEXT, at REAL, "
            "PRIMARY KEY (organ_id, key))"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS copies (key TEXT, child TEXT, bytes INTEGER, "
            "PRIMARY KEY (key, child))"
        )
        self.writer = ThreadPoolExecutor(max_workers=1)

    async def run(self, connection: aio_pika.abc.AbstractConnection) -> None:
        inbound = await connection.channel()
        await inbound.set_qos(prefetch_count=PREFETCH)
        outbound = await connection.channel(publisher_confirms=True)
        queue = await inbound.declare_queue(self.queue, durable=True)
        for child_queue in self.children.values():
            await outbound.declare_queue(child_queue, durable=True)
        loop = asyncio.get_running_loop()
        async with queue.iterator() as messages:
            async for message in messages:
                key = message.message_id or ""
                named = recipients_of(message.body)
                mine = [o for o in named if o in self.hosted]
                below = sorted({self.route[o] for o in named if o in self.route})
                await loop.run_in_executor(
                    self.writer, self._write, key, mine, below, len(message.body)
                )
                for child in below:
                    await outbound.default_exchange.publish(
                        aio_pika.Message(
                            message.body,
                            message_id=key,
                            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                        ),
                        routing_key=self.children[child],
                        mandatory=True,
                        timeout=10,
                    )
                await message.ack()

    def _write(self, key: str, mine: list[str], below: list[str], size: int) -> None:
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        self.db.executemany(
            "INSERT OR IGNORE INTO mailbox (organ_id, key, at) VALUES (?, ?, ?)",
            [(organ, key, now) for organ in mine],
        )
        self.db.executemany(
            "INSERT OR IGNORE INTO copies (key, child, bytes) VALUES (?, ?, ?)",
            [(key, child, size) for child in below],
        )
        self.db.execute("COMMIT")


async def serve(plan: dict[str, Any], process: int) -> None:
    nodes = [RawNode(n, plan) for n, p in plan["processes"].items() if p == process]
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, asyncio.TaskGroup() as tasks:
        for node in nodes:
            tasks.create_task(node.run(connection))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.fanout_raw PLAN PROCESS")
    asyncio.run(serve(json.loads(Path(sys.argv[1]).read_text()), int(sys.argv[2])))
