"""The 4-hop route, beside raw aio-pika forwarders, in the same run.

Signed 10 KiB documents from a commune agency (000.21.31.H53) to an agency on the
central node (000.00.00.G22) cross commune -> district -> province -> central.

- **lienthong**: four ``lienthong serve`` processes, one node each (SQLite stores),
  linked as the child opens them; the commune node admits (2 admission worker
  processes), every node commits, signs its hop and relays; the central node writes the
  mailbox row.
- **baseline**: four raw aio-pika processes (bench/forwarder.py): three forwarders, each
  consuming a queue and publishing to the next with a publisher confirm, acking after
  the confirm, and a last one that inserts into an fsynced SQLite table.

Both trees run side by side for the whole scenario. Latency is from the publish of the
submission to the moment the row (the central mailbox row, the baseline's inserted row)
is seen by a read-only reader of that SQLite file polling every 2 ms. Capacity: a burst
published at once, to the last row. Paced: 25 % of lienthong's capacity (calibrated once
at the start), the same rate for both.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aio_pika

from bench import hops
from bench.arrivals import Arrivals, Run, summarise
from bench.documents import numbered, signed_document
from bench.route_report import report, report_cpu
from bench.tree import (
    AMQP_URL,
    BenchNode,
    BenchTree,
    cpu_seconds,
    delete_queues,
    suffix,
    wait_for_consumers,
)

SENDER, RECIPIENT = "000.21.31.H53", "000.00.00.G22"
LEVELS = ("central", "province", "district", "commune")
POLL_S = 0.002
DEADLINE_S = 120.0


class Lienthong:
    name = "lienthong"
    answers = True  # the node answers each submission with the message id it gave it

    def __init__(self, folder: Path, admission_workers: int) -> None:
        tag = suffix()
        self.ids = {level: f"bench-{level}-{tag}" for level in LEVELS}
        parents = dict(zip(LEVELS, (None, *LEVELS), strict=False))
        nodes = [
            BenchNode(
                self.ids[level],
                self.ids[parent] if parent else None,
                process=index,
                admission_workers=admission_workers if level == "commune" else 0,
            )
            for index, (level, parent) in enumerate(parents.items())
        ]
        homes = {
            SENDER: self.ids["commune"],
            "000.00.31.H53": self.ids["district"],
            "000.00.00.H53": self.ids["province"],
            RECIPIENT: self.ids["central"],
        }
        self.tree = BenchTree(folder / "lienthong", nodes, homes, [SENDER])
        self.tree.write()
        self.entry = f"lienthong.{self.ids['commune']}.inbound"

    def start(self) -> None:
        self.tree.start()

    async def ready(self) -> None:
        await self.tree.ready()

    def arrivals(self) -> Arrivals:
        return Arrivals(
            self.tree.database(self.ids["central"]),
            "mailbox",
            "message_id",
            f"organ_id = '{RECIPIENT}'",
        )

    def pids(self) -> dict[str, int]:
        return {level: self.tree.processes[index].pid for index, level in enumerate(LEVELS)}

    def stop(self) -> None:
        self.tree.stop()

    def queues(self) -> list[str]:
        return self.tree.queue_names()


class Forwarders:
    name = "raw aio-pika forwarders"
    answers = False

    def __init__(self, folder: Path) -> None:
        tag = suffix()
        self.hops = [f"bench.route.{tag}.{level}" for level in reversed(LEVELS)]
        self.db = folder / "forwarders" / "delivered.db"
        self.db.parent.mkdir(parents=True)
        self.entry = self.hops[0]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        commands = [[a, b] for a, b in itertools.pairwise(self.hops)]
        commands.append([self.hops[-1], "--sink", str(self.db)])
        with open(self.db.parent / "forwarders.log", "ab") as log:
            for args in commands:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.forwarder", *args],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )

    async def ready(self) -> None:
        await wait_for_consumers(self.hops, 60)

    def arrivals(self) -> Arrivals:
        return Arrivals(self.db, "delivered", "key")

    def pids(self) -> dict[str, int]:
        labels = [*(f"{a} → {b}" for a, b in itertools.pairwise(reversed(LEVELS))), "sink"]
        return {label: p.pid for label, p in zip(labels, self.processes, strict=True)}

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(timeout=30)

    def queues(self) -> list[str]:
        return list(self.hops)


System = Lienthong | Forwarders


async def offer(
    system: System, packages: list[bytes], rate: float | None
) -> tuple[Run, dict[str, float]]:
    """Submit (all at once when ``rate`` is None, else paced) and time each package to its
    row. Returns the run and, for lienthong, each message id's submission wall time."""
    arrivals = system.arrivals()
    arrivals.poll()
    run_id = uuid.uuid4().hex[:8]
    keys = [f"{run_id}-{i}" for i in range(len(packages))]
    sent: dict[str, float] = {}
    sent_wall: dict[str, float] = {}
    answers: dict[str, str] = {}
    refused: list[str] = []
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        reply_to = None
        if system.answers:
            replies = await channel.declare_queue(f"lienthong.reply.bench-{run_id}", exclusive=True)
            reply_to = replies.name

            async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
                answer = json.loads(message.body)
                if answer.get("outcome") != "accepted":
                    refused.append(str(answer))
                answers[message.correlation_id or ""] = str(answer.get("message_id"))
                await message.ack()

            await replies.consume(on_reply)

        async def submit() -> None:
            start = time.perf_counter()
            for index, (key, data) in enumerate(zip(keys, packages, strict=True)):
                if rate is not None:
                    delay = start + index / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent[key], sent_wall[key] = time.perf_counter(), time.time()
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        data,
                        message_id=key,
                        correlation_id=key,
                        reply_to=reply_to,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=system.entry,
                )

        def target(key: str) -> str | None:
            return answers.get(key) if system.answers else key

        async def watch() -> None:
            while True:
                arrivals.poll()
                if refused:
                    raise RuntimeError(f"{system.name} refused packages: {refused[:3]}")
                if len(sent) == len(keys) and all(
                    (t := target(k)) is not None and t in arrivals.seen for k in keys
                ):
                    return
                await asyncio.sleep(POLL_S)

        async with asyncio.timeout(DEADLINE_S), asyncio.TaskGroup() as group:
            group.create_task(submit())
            group.create_task(watch())
    arrivals.close()
    arrived = {k: arrivals.seen[target(k) or ""] for k in keys}
    latencies = [arrived[k] - sent[k] for k in keys]
    elapsed = max(arrived.values()) - min(sent.values())
    walls = {answers[k]: sent_wall[k] for k in keys} if system.answers else {}
    return summarise(latencies, elapsed), walls


def run(*, rounds: int, quick: bool, repeats: int = 3) -> None:
    """Both systems up side by side; lienthong's capacity calibrated once; then, per
    repeat, each system in turn (the order alternating): capacity, then paced load at
    25 % of the calibrated capacity. ``rounds`` is not used: the route repeats 3 times."""
    del rounds
    repeats = 1 if quick else repeats
    burst, paced_seconds, least = (20, 0.5, 10) if quick else (1000, 10.0, 20)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = Lienthong(folder, admission_workers=0 if quick else 2)
        base = Forwarders(folder)
        systems: tuple[System, ...] = (ours, base)
        key = ours.tree.key(SENDER)
        template = signed_document(SENDER, [RECIPIENT], key)
        seeds = itertools.count()

        def batch(count: int) -> list[bytes]:
            return numbered(template, key, count, f"{next(seeds)}-")

        capacity: dict[str, list[float]] = {s.name: [] for s in systems}
        cpu: dict[tuple[str, str], list[float]] = {}  # (system, process) -> ms per package
        paced: dict[str, list[Run]] = {s.name: [] for s in systems}
        walls: dict[str, float] = {}
        try:
            for system in systems:
                system.start()
            for system in systems:
                asyncio.run(system.ready())
                asyncio.run(offer(system, batch(10), None))  # warm: connections, files
            calibration, _ = asyncio.run(offer(ours, batch(burst), None))
            rate = calibration.throughput * 0.25
            count = max(least, int(rate * paced_seconds))
            for repeat in range(repeats):
                for system in systems if repeat % 2 == 0 else systems[::-1]:
                    before = {k: cpu_seconds([p]) for k, p in system.pids().items()}
                    full, _ = asyncio.run(offer(system, batch(burst), None))
                    for label, pid in system.pids().items():
                        used = cpu_seconds([pid]) - before[label]
                        cpu.setdefault((system.name, label), []).append(used / burst * 1000)
                    quarter, submitted = asyncio.run(offer(system, batch(count), rate))
                    capacity[system.name].append(full.throughput)
                    paced[system.name].append(quarter)
                    walls.update(submitted)
            legs = hops.legs(ours.tree.database(ours.ids["central"]), RECIPIENT, walls)
        finally:
            for system in systems:
                system.stop()
            asyncio.run(delete_queues([q for s in systems for q in s.queues()]))
        roles = {node_id: level for level, node_id in ours.ids.items()}
        report(capacity, paced, rate, count, burst, calibration, legs, roles)
        report_cpu(cpu)
