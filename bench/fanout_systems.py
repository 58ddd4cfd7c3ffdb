"""The two trees of the fan-out scenario, behind one face: lienthong (``lienthong serve``
processes, bench/tree.py) and its baseline (raw aio-pika processes, bench/fanout_raw.py),
each with the same nodes, agencies and packing into processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path

import aio_pika

from adapters.client import NodeClient
from bench.observe import LinkCopy, connection_errors, link_copies, mailbox_rows
from bench.tree import AMQP_URL, BenchNode, BenchTree, wait_for_consumers

SENDER = "000.00.00.G01"


class LienthongFanout:
    name = "lienthong"

    def __init__(self, folder: Path, nodes: Sequence[BenchNode], homes: Mapping[str, str]) -> None:
        self.tree = BenchTree(folder, nodes, homes, [SENDER])
        self.tree.write()
        self.central = nodes[0].id

    def start(self) -> None:
        self.tree.start()

    async def ready(self, timeout: float) -> None:
        await self.tree.ready(timeout)

    async def submit(self, data: bytes) -> str:
        async with NodeClient(AMQP_URL, self.central, timeout_s=120) as client:
            (answer,) = await client.submit([data], as_organ=SENDER)
        if answer.outcome != "accepted" or answer.message_id is None:
            raise RuntimeError(f"the central node did not accept the package: {answer}")
        return answer.message_id

    def rows(self, node: str, key: str) -> tuple[int, float | None]:
        count, last = mailbox_rows(self.tree.database(node), key)
        return count, datetime.fromisoformat(last).timestamp() if last else None

    def copies(self, key: str) -> list[LinkCopy]:
        return link_copies(self.tree, key)

    def lost_connections(self) -> list[str]:
        return connection_errors(self.tree)

    def pids(self) -> list[int]:
        return self.tree.pids()

    def stop(self) -> None:
        self.tree.stop()

    def queues(self) -> list[str]:
        return self.tree.queue_names()


class RawFanout:
    name = "raw aio-pika tree"

    def __init__(
        self, folder: Path, nodes: Sequence[BenchNode], homes: Mapping[str, str], tag: str
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True)
        self.nodes = [n.id for n in nodes]
        self.plan = {
            "parents": {n.id: n.parent for n in nodes},
            "homes": dict(homes),
            "queues": {n.id: f"bench.fanout.{tag}.{n.id}" for n in nodes},
            "databases": {n.id: str(folder / f"{n.id}.db") for n in nodes},
            "processes": {n.id: n.process for n in nodes},
        }
        (folder / "plan.json").write_text(json.dumps(self.plan))
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with open(self.folder / "raw.log", "ab") as log:
            for number in sorted(set(self.plan["processes"].values())):
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "bench.fanout_raw",
                            str(self.folder / "plan.json"),
                            str(number),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )

    async def ready(self, timeout: float) -> None:
        await wait_for_consumers(self.queues(), timeout)

    async def submit(self, data: bytes) -> str:
        key = str(uuid.uuid4())
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    data, message_id=key, delivery_mode=aio_pika.DeliveryMode.PERSISTENT
                ),
                routing_key=self.plan["queues"][self.nodes[0]],
                mandatory=True,
            )
        return key

    def _read(self, node: str, sql: str, key: str) -> list[tuple[object, ...]]:
        db = Path(self.plan["databases"][node])
        if not db.exists():
            return []
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            try:
                return connection.execute(sql, (key,)).fetchall()
            except sqlite3.OperationalError:  # not created yet
                return []

    def rows(self, node: str, key: str) -> tuple[int, float | None]:
        found = self._read(node, "SELECT count(*), max(at) FROM mailbox WHERE key = ?", key)
        if not found:
            return 0, None
        count, last = found[0]
        return int(str(count)), float(str(last)) if last is not None else None

    def copies(self, key: str) -> list[LinkCopy]:
        """A copy is published when its child holds it (the row is written before the
        publish); the raw tree carries no envelope."""
        copies = []
        for node in self.nodes:
            sent = self._read(node, "SELECT child, bytes FROM copies WHERE key = ?", key)
            for child, size in sent:
                arrived = self.rows(str(child), key)[0] > 0
                copies.append(LinkCopy(node, str(child), int(str(size)), 0, arrived))
        return copies

    def lost_connections(self) -> list[str]:
        return []

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)

    def queues(self) -> list[str]:
        return list(self.plan["queues"].values())


Fanout = LienthongFanout | RawFanout
