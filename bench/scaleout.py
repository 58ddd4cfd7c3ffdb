"""One node as one and as two service instances on one PostgreSQL store, in the same run.

- **2 instances (ours)**: ``lienthong serve`` twice with the same node file (``--instance``
  gives each its own evidence chain), both consuming the node's inbound queue, both
  relaying from one PostgreSQL schema, what each relays leased to it.
- **1 instance (baseline)**: the same node file, served once.

Signed 10 KiB documents (bench/intake.py's) from G22 to H53, hosted here, and to the
commune, hosted by the parent: each is one mailbox row and one link copy. Capacity: a
burst published at once to the inbound queue, every answer ``accepted``, timed to the last
mailbox row in PostgreSQL. After each burst the duplicates are counted: packages not in
the mailbox exactly once, copies whose delivery was recorded twice, link copies published
twice (the parent's up queue, read back whole).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import psycopg

from bench.intake import AMQP_URL, COMMUNE, RECIPIENT, _node_config, _offer, _packages
from bench.plots import lines
from bench.report import Headline, Section
from bench.timing import spread
from bench.tree import cpu_seconds, delete_queues
from exchange.links import LANES, up_gate, up_queue
from exchange.node import queues_of

PG_DSN = os.environ.get("LIENTHONG_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
POLL_S = 0.005


@dataclass(frozen=True)
class Duplicates:
    """What one burst left that should be there once and is not."""

    not_once: int  # packages not in the mailbox exactly once
    delivered_twice: int  # mailbox copies whose delivery was recorded more than once
    published_twice: int  # link copies on the parent's queue more than once
    link_copies: int  # link copies read back (each package's, once)

    @property
    def total(self) -> int:
        return self.not_once + self.delivered_twice + self.published_twice


@dataclass(frozen=True)
class Burst:
    instances: int
    throughput: float  # packages per second, to the last mailbox row
    cpu_ms: float  # CPU of the node's processes (with admission workers), per package
    duplicates: Duplicates


class MailboxRows:
    """Rows in the node's PostgreSQL mailbox for H53: the end of intake, after the relay."""

    def __init__(self, schema: str) -> None:
        self.connection = psycopg.connect(PG_DSN, autocommit=True)
        self.schema = schema
        self.start = self()

    def __call__(self) -> int:
        try:
            row = self.connection.execute(
                f"SELECT count(*) FROM {self.schema}.mailbox WHERE organ_id = %s".encode(),
                (RECIPIENT,),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # not migrated yet
            return 0
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.connection.close()


class Node:
    """The node's files, its schema and the parent's side of its link."""

    def __init__(self, folder: Path) -> None:
        tag = uuid.uuid4().hex[:8]
        self.folder, self.id, self.parent = folder, f"bench-scale-{tag}", f"bench-scale-{tag}-up"
        self.schema = f"bench_scale_{tag}"
        store = f'[store]\nkind = "postgres"\ndsn = "{PG_DSN}"\nschema = "{self.schema}"\n'
        self.config = _node_config(folder, self.id, store)
        text = self.config.read_text()
        self.config.write_text(
            text.replace(f'id = "{self.id}"\n', f'id = "{self.id}"\nparent = "{self.parent}"\n')
        )
        directory = folder / "pki" / "directory.toml"  # the commune lives at the parent
        directory.write_text(
            directory.read_text().replace(
                f'organ_id = "{COMMUNE}"\nhome_node = "{self.id}"',
                f'organ_id = "{COMMUNE}"\nhome_node = "{self.parent}"',
            )
        )
        self.inbound = f"lienthong.{self.id}.inbound"
        self.links = [up_queue(self.parent, lane) for lane in LANES]
        self.processes: list[subprocess.Popen[bytes]] = []

    async def declare_parent(self) -> None:
        """The parent's up queues and gate: where the node's link copies land."""
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            gate = await channel.declare_exchange(
                up_gate(self.parent), aio_pika.ExchangeType.DIRECT, durable=True
            )
            for name in self.links:
                queue = await channel.declare_queue(name, durable=True)
                await queue.bind(gate, routing_key=name)

    def start(self, instances: int) -> None:
        for number in range(instances):
            command = [
                *(sys.executable, "-m", "adapters.cli", "serve", "--config", str(self.config)),
                *("--instance", f"i{number + 1}", "--log-level", "warning"),
            ]
            with open(self.folder / f"instance-{number + 1}.log", "ab") as log:
                self.processes.append(
                    subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
                )

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self.processes = []

    def _check_alive(self) -> None:
        for number, process in enumerate(self.processes, start=1):
            if process.poll() is not None:
                log = (self.folder / f"instance-{number}.log").read_text(errors="replace")
                exited = f"instance {number} exited ({process.returncode})"
                raise RuntimeError(f"{exited}:\n{log[-3000:]}")

    async def ready(self, instances: int, timeout: float = 120) -> None:
        """Until ``instances`` processes consume the inbound queue."""
        connection = await aio_pika.connect(AMQP_URL)
        async with connection, asyncio.timeout(timeout):
            while True:
                self._check_alive()
                channel = await connection.channel()
                try:
                    queue = await channel.declare_queue(self.inbound, passive=True)
                    if (queue.declaration_result.consumer_count or 0) >= instances:
                        return
                except aio_pika.exceptions.ChannelClosed:
                    pass  # not declared yet
                finally:
                    if not channel.is_closed:
                        await channel.close()
                await asyncio.sleep(0.2)

    async def settled(self, timeout: float = 120) -> None:
        """Until no outbox row waits: every link copy of the burst is published."""
        async with (
            await psycopg.AsyncConnection.connect(PG_DSN, autocommit=True) as conn,
            asyncio.timeout(timeout),
        ):
            while True:
                row = await (
                    await conn.execute(
                        f"SELECT count(*) FROM {self.schema}.outbox WHERE done_at IS NULL".encode()
                    )
                ).fetchone()
                if row is not None and row[0] == 0:
                    return
                await asyncio.sleep(0.05)

    async def link_copies(self) -> tuple[int, int]:
        """(link copies on the parent's queues, how many were a copy published before);
        the queues are left empty."""
        seen: set[str] = set()
        total = 0
        connection = await aio_pika.connect(AMQP_URL)
        async with connection:
            channel = await connection.channel()
            for name in self.links:
                queue = await channel.declare_queue(name, durable=True, passive=True)
                while (message := await queue.get(fail=False, no_ack=True)) is not None:
                    total += 1
                    seen.add(message.message_id or "")
        return total, total - len(seen)

    def duplicates(self, published_twice: int, link_copies: int) -> Duplicates:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"SET search_path = {self.schema}".encode())
            not_once = conn.execute(
                "SELECT count(*) FROM (SELECT p.message_id FROM packages p "
                "LEFT JOIN mailbox m ON m.message_id = p.message_id AND m.organ_id = %s "
                "GROUP BY p.message_id HAVING count(m.organ_id) != 1) x",
                (RECIPIENT,),
            ).fetchone()
            twice = conn.execute(
                "SELECT count(*) FROM (SELECT message_id, r FROM evidence, "
                "jsonb_array_elements_text((record::jsonb) -> 'detail' -> 'recipients') r "
                "WHERE kind = 'delivered' GROUP BY message_id, r HAVING count(*) > 1) x"
            ).fetchone()
        assert not_once is not None
        assert twice is not None
        return Duplicates(int(not_once[0]), int(twice[0]), published_twice, link_copies)

    def drop(self) -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE".encode())

    def queues(self) -> list[str]:
        return [*queues_of(self.id, None), *self.links, up_gate(self.parent)]


def _burst(node: Node, instances: int, warm: list[bytes], burst: list[bytes]) -> Burst:
    """Serve the node with ``instances`` processes; a warm-up, then the timed burst."""
    node.start(instances)
    try:
        asyncio.run(node.ready(instances))
        counter = MailboxRows(node.schema)
        try:
            asyncio.run(_offer(node.inbound, warm, None, counter))
            asyncio.run(node.settled())
            asyncio.run(node.link_copies())  # the warm-up's, out of the way
            pids = [p.pid for p in node.processes]
            counter.start = counter()
            before = cpu_seconds(pids)
            run = asyncio.run(_offer(node.inbound, burst, None, counter))
            cpu_ms = (cpu_seconds(pids) - before) / len(burst) * 1000
            asyncio.run(node.settled())
        finally:
            counter.close()
    finally:
        node.stop()
    total, twice = asyncio.run(node.link_copies())
    return Burst(instances, run.throughput, cpu_ms, node.duplicates(twice, total))


def run(*, rounds: int, quick: bool, repeats: int = 3, plots: Path | None = None) -> Section:
    """Per repeat, one instance and two in turn (the order alternating), each from a fresh
    start: a warm-up, then a burst timed to its last mailbox row."""
    del rounds
    repeats = 1 if quick else max(3, repeats)
    size, warm_size = (30, 5) if quick else (800, 40)
    results: dict[int, list[Burst]] = {1: [], 2: []}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(Path(tmp))
        seeds = iter(range(1_000_000))

        def batch(count: int) -> list[bytes]:
            return _packages(node.folder / "pki", count, f"s{next(seeds)}-")

        try:
            asyncio.run(node.declare_parent())
            for repeat in range(repeats):
                for instances in (1, 2) if repeat % 2 == 0 else (2, 1):
                    measured = _burst(node, instances, batch(warm_size), batch(size))
                    results[instances].append(measured)
        finally:
            node.stop()
            asyncio.run(delete_queues(node.queues()))
            node.drop()
    return _section(results, size, repeats, time.perf_counter() - started, plots)


def _section(
    results: dict[int, list[Burst]],
    size: int,
    repeats: int,
    seconds: float,
    plots: Path | None,
) -> Section:
    one, two = ([b.throughput for b in results[n]] for n in (1, 2))
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    found = [b.duplicates for n in (1, 2) for b in results[n]]
    names = {1: "1 instance (baseline)", 2: "2 instances"}
    rows = "\n".join(
        f"| {names[n]} | {spread([b.throughput for b in results[n]])} "
        f"| {spread([b.cpu_ms for b in results[n]], '{:.2f}')} |"
        for n in (1, 2)
    )
    checks = [
        ("packages not in the mailbox exactly once", [d.not_once for d in found]),
        ("mailbox copies whose delivery was recorded twice", [d.delivered_twice for d in found]),
        ("link copies published twice", [d.published_twice for d in found]),
    ]
    copies = sum(d.link_copies for d in found)
    duplicates = "\n".join(f"| {name} | {sum(values)} |" for name, values in checks)
    body = f"""### Scale-out: one node as two service instances on PostgreSQL

One node, its store a PostgreSQL schema of its own. **2 instances**: `lienthong serve` twice
with the same node file (each `--instance` its own evidence chain), both consuming the
node's inbound queue and relaying from the one store; what each relays (outbox rows,
reports, mail to push) is leased to it, claimed `FOR UPDATE SKIP LOCKED`
(docs/operations.md, "Two instances of one node"). **Baseline**: the same node served
once. Each takes signed 10 KiB documents from G22 to H53 (a mailbox here) and to a commune
hosted by the parent (a link copy): {size} published at once, every answer `accepted`,
timed to the last mailbox row in PostgreSQL. {repeats} repeat(s), the two in turn, the
order alternating; each from a fresh start and a warm-up.

This machine has 2 cores, shared by everything: the instances, their admission worker
processes, RabbitMQ, PostgreSQL and this load generator. Two instances cannot double the
throughput here; the figure shows that they share the work safely, not how far a node
scales on machines of its own.

| node served by | packages/s | CPU ms per package, node processes |
|---|---|---|
{rows}

2 instances / 1, per repeat: {spread(ratios, "{:.2f}")}.

Duplicates after every burst, both configurations, all repeats (each must be 0; the
{copies} link copies were read back from the parent's queues):

| check | found |
|---|---|
{duplicates}

The whole scenario took {seconds:.0f} s.
"""
    if sum(d.total for d in found):
        raise RuntimeError(f"duplicates found:\n{duplicates}")
    drawn = []
    if plots is not None:
        lines(
            plots / "scaleout.png",
            title="One node on PostgreSQL, a burst of signed 10 KiB documents",
            xlabel="repeat",
            ylabel="packages/s, to the last mailbox row",
            series={
                names[n]: [(i + 1, b.throughput) for i, b in enumerate(results[n])] for n in (1, 2)
            },
            xticks=[(i + 1, str(i + 1)) for i in range(repeats)],
        )
        drawn.append("bench/scaleout.png")
    headline = Headline(
        measure="capacity, 2 instances vs 1, PostgreSQL, packages/s",
        ours=spread(two),
        baseline=spread(one),
        ratio=spread(ratios, "{:.2f}"),
        target="",
        met=None,
    )
    return Section(
        scenario="scaleout",
        title="Scale-out: two service instances of one node (issue 10)",
        body=body,
        headlines=[headline],
        plots=drawn,
    )
