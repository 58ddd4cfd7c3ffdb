"""A chain of nodes from a commune upward, and its baselines: what the route and sizes
scenarios measure.

A chain of ``nodes`` levels starts at the commune and climbs: commune -> district (2, one
hop), ... -> province -> central (4, the route). Signed documents from the commune agency
(000.21.31.H53) go to the agency hosted on the top node.

- :class:`Lienthong`: one ``lienthong serve`` process per node (SQLite stores), each child
  linked to its parent as in production; the commune node admits, every node commits,
  signs its hop and relays, the top node writes the mailbox row.
- :class:`Forwarders`: one raw aio-pika process per node (bench/forwarder.py): a
  forwarder per link and a last one that inserts into an fsynced SQLite table; with
  ``verify``, the first forwarder verifies each package first, as a naive gateway would
  (bench/admission.py's baseline).

:func:`offer` submits packages to a system (all at once, or paced) and times each to its
row, seen by a read-only reader of that SQLite file polling every 2 ms.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aio_pika

from bench.arrivals import Arrivals, Run, summarise
from bench.tree import AMQP_URL, BenchNode, BenchTree, suffix, wait_for_consumers

LEVELS = ("commune", "district", "province", "central")  # upward
AGENCY = {  # the agency each level's node hosts
    "commune": "000.21.31.H53",
    "district": "000.00.31.H53",
    "province": "000.00.00.H53",
    "central": "000.00.00.G22",
}
SENDER = AGENCY["commune"]
POLL_S = 0.002
DEADLINE_S = 120.0


def levels(nodes: int) -> tuple[str, ...]:
    if not 2 <= nodes <= len(LEVELS):
        raise ValueError(f"a chain has 2 to {len(LEVELS)} nodes, not {nodes}")
    return LEVELS[:nodes]


class Lienthong:
    name = "lienthong"
    answers = True  # the node answers each submission with the message id it gave it

    def __init__(self, folder: Path, nodes: int = 4, admission_workers: int | None = None) -> None:
        """``admission_workers`` of the commune node (None: the node's default); the
        nodes above only check envelopes and admit in a thread."""
        self.levels = levels(nodes)
        tag = suffix()
        self.ids = {level: f"bench-{level}-{tag}" for level in self.levels}
        self.top = self.ids[self.levels[-1]]
        self.recipient = AGENCY[self.levels[-1]]
        parents = dict(zip(self.levels, (*self.levels[1:], None), strict=True))
        members = [
            BenchNode(
                self.ids[level],
                self.ids[parent] if parent else None,
                process=index,
                admission_workers=admission_workers if level == "commune" else 0,
            )
            for index, (level, parent) in enumerate(parents.items())
        ]
        homes = {AGENCY[level]: self.ids[level] for level in self.levels}
        self.tree = BenchTree(folder / f"lienthong-{tag}", members, homes, [SENDER])
        self.tree.write()
        self.entry = f"lienthong.{self.ids['commune']}.inbound"

    def start(self) -> None:
        self.tree.start()

    async def ready(self) -> None:
        await self.tree.ready()

    def check(self) -> None:
        self.tree.check_alive()

    def arrivals(self) -> Arrivals:
        return Arrivals(
            self.tree.database(self.top), "mailbox", "message_id", f"organ_id = '{self.recipient}'"
        )

    def pids(self) -> dict[str, int]:
        return {level: self.tree.processes[index].pid for index, level in enumerate(self.levels)}

    def stop(self) -> None:
        self.tree.stop()

    def queues(self) -> list[str]:
        return self.tree.queue_names()


class Forwarders:
    answers = False

    def __init__(self, folder: Path, nodes: int = 4, verify: Path | None = None) -> None:
        """``verify``: the CA file; the first forwarder then verifies every package."""
        self.levels = levels(nodes)
        self.verify = verify
        self.name = "naive verifying forwarder" if verify else "raw aio-pika forwarders"
        tag = suffix()
        self.hops = [f"bench.route.{tag}.{level}" for level in self.levels]
        self.folder = folder / f"forwarders-{tag}"
        self.folder.mkdir(parents=True)
        self.db = self.folder / "delivered.db"
        self.log = self.folder / "forwarders.log"
        self.entry = self.hops[0]
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        commands = [[a, b] for a, b in itertools.pairwise(self.hops)]
        if self.verify is not None:
            commands[0] += ["--verify", str(self.verify)]
        commands.append([self.hops[-1], "--sink", str(self.db)])
        with open(self.log, "ab") as log:
            for args in commands:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "bench.forwarder", *args],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                )

    async def ready(self) -> None:
        await wait_for_consumers(self.hops, 60, self.check)

    def check(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name}: a process exited ({process.returncode}):\n{tail}")

    def arrivals(self) -> Arrivals:
        return Arrivals(self.db, "delivered", "key")

    def pids(self) -> dict[str, int]:
        labels = [*(f"{a} → {b}" for a, b in itertools.pairwise(self.levels)), "sink"]
        return {label: p.pid for label, p in zip(labels, self.processes, strict=True)}

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def queues(self) -> list[str]:
        return list(self.hops)


System = Lienthong | Forwarders


async def offer(
    system: System, packages: list[bytes], rate: float | None
) -> tuple[Run, dict[str, float]]:
    """Submit (all at once when ``rate`` is None, else paced) and time each package to its
    row. Returns the run and, for lienthong, each message id's submission wall time. Every
    answer must be ``accepted``, and every process of the system alive, or it raises."""
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
                system.check()
                if len(sent) == len(keys) and all(
                    (t := target(k)) is not None and t in arrivals.seen for k in keys
                ):
                    return
                await asyncio.sleep(POLL_S)

        try:
            async with asyncio.timeout(DEADLINE_S), asyncio.TaskGroup() as group:
                group.create_task(submit())
                group.create_task(watch())
        except TimeoutError:
            seen = sum(1 for k in keys if (t := target(k)) is not None and t in arrivals.seen)
            raise RuntimeError(
                f"{system.name}: {seen} of {len(keys)} packages arrived in {DEADLINE_S:.0f} s"
            ) from None
    arrivals.close()
    arrived = {k: arrivals.seen[target(k) or ""] for k in keys}
    latencies = [arrived[k] - sent[k] for k in keys]
    elapsed = max(arrived.values()) - min(sent.values())
    walls = {answers[k]: sent_wall[k] for k in keys} if system.answers else {}
    return summarise(latencies, elapsed), walls
