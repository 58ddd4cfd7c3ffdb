"""One node's intake, beside two baselines, in the same run.

- **lienthong**: ``lienthong serve`` (SQLite store) takes signed 10 KiB documents from its
  inbound queue: fast dedup, admission, one-transaction commit, ack, answer; its relay
  then puts each in a local mailbox.
- **(a) raw**: an aio-pika consumer that inserts each message into SQLite (fsynced) and acks.
- **(b) naive**: (a) plus the admission baseline (parse, XSD, attachments, signxml verify).

Each system runs as its own process; this process is the load generator. For each system
it finds the capacity (all packages published at once, throughput to the last answer),
then offers load at 25 % and 50 % of lienthong's capacity, paced, and records latency from
publish to answer. Every measurement is repeated; the report gives median (min–max).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika

from adapters.pki_files import init_pki
from bench.admission import make_package
from bench.report import Headline, Section
from bench.timing import spread
from exchange.signing import SigningKey, sign

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
SENDER, RECIPIENT, COMMUNE = "000.00.00.G22", "000.00.00.H53", "000.21.31.H53"
AGENCIES = (SENDER, RECIPIENT, COMMUNE)  # the template document goes to H53 and the commune


@dataclass
class Run:
    throughput: float  # answers per second
    p50_ms: float
    p99_ms: float


def sender_key(pki: Path) -> SigningKey:
    """The key the sender agency signs its documents with."""
    return SigningKey.from_pem(
        (pki / "agencies" / f"{SENDER}.key").read_bytes(),
        (pki / "agencies" / f"{SENDER}.pem").read_bytes(),
    )


def _packages(pki: Path, count: int, seed: str) -> list[bytes]:
    key = sender_key(pki)
    template = make_package(10 * 1024, key)
    # distinct documents: each its own DocumentId (else the node answers "duplicate")
    out = []
    for i in range(count):
        data = template.replace(
            b"125/UBND-VP</edXML:DocumentId>", f"{seed}{i}/UBND-VP</edXML:DocumentId>".encode()
        )
        out.append(sign(data, key))
    return out


SQLITE_STORE = '[store]\nkind = "sqlite"\npath = "store"\n'


def _node_config(folder: Path, node_id: str, store: str = SQLITE_STORE) -> Path:
    """The node file (with its PKI and directory) of a node hosting AGENCIES; ``store``
    is its [store] table (bench/scaleout.py: PostgreSQL)."""
    pki = folder / "pki"
    init_pki(pki, list(AGENCIES), [node_id], key_type="rsa")
    directory = (pki / "directory.toml").read_text()
    for organ in AGENCIES:
        directory = directory.replace(
            f'organ_id = "{organ}"\n', f'organ_id = "{organ}"\nhome_node = "{node_id}"\n'
        )
    (pki / "directory.toml").write_text(directory)
    config = folder / "node.toml"
    config.write_text(
        f'[node]\nid = "{node_id}"\n\n[rabbitmq]\nurl = "{AMQP_URL}"\nprefetch = 32\n\n'
        f"{store}\n"
        '[trust]\nca = "pki/ca.pem"\ndirectory = "pki/directory.toml"\n'
        f'node_key = "pki/nodes/{node_id}.key"\nnode_certs = "pki/nodes"\n\n'
        "[limits]\n"  # admission workers: the node's default (one fewer than the cores)
    )
    return config


async def _offer(
    queue: str, packages: list[bytes], rate: float | None, delivered: Callable[[], int] | None
) -> Run:
    """Publish (all at once when ``rate`` is None, else paced) and time every answer; with
    ``delivered`` (a count of mailbox rows), the run ends when the last one is written."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(
            f"lienthong.reply.bench-{uuid.uuid4().hex}", exclusive=True
        )
        sent: dict[str, float] = {}
        latencies: list[float] = []
        done = asyncio.Event()

        outcomes: list[str] = []

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            latencies.append(time.perf_counter() - sent[message.correlation_id or ""])
            outcomes.append(json.loads(message.body).get("outcome", "?"))
            await message.ack()
            if len(latencies) == len(packages):
                done.set()

        await replies.consume(on_reply)
        start = time.perf_counter()
        for index, data in enumerate(packages):
            if rate is not None:
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            key = str(index)
            sent[key] = time.perf_counter()
            await channel.default_exchange.publish(
                aio_pika.Message(
                    data,
                    correlation_id=key,
                    reply_to=replies.name,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=queue,
            )
        await asyncio.wait_for(done.wait(), timeout=120)
        if set(outcomes) != {"accepted"}:  # a benchmark of refusals measures nothing
            raise RuntimeError(f"not every package was accepted: {sorted(set(outcomes))}")
        if delivered is not None:
            target = delivered.start + len(packages)  # type: ignore[attr-defined]
            async with asyncio.timeout(120):
                while delivered() < target:  # noqa: ASYNC110 - polls another process's store
                    await asyncio.sleep(0.002)
        elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    return Run(
        throughput=len(packages) / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


def _start(
    system: str, folder: Path, config: Path, node_id: str
) -> tuple[subprocess.Popen[bytes], str]:
    if system == "lienthong":
        command = [
            sys.executable,
            "-m",
            "adapters.cli",
            "serve",
            "--config",
            str(config),
            "--log-level",
            "warning",
        ]
        queue = f"lienthong.{node_id}.inbound"
    else:
        queue = f"bench.{system}.{node_id}"
        command = [
            sys.executable,
            "-m",
            "bench.servers",
            system,
            queue,
            str(folder / f"{system}.db"),
        ]
        if system == "naive":
            command.append(str(folder / "pki" / "ca.pem"))
    log = open(folder / f"{system}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, stdout=log, stderr=log), queue


class _MailboxCount:
    """Rows in the node's mailbox for the recipient (the end of intake, after the relay)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.start = self()

    def __call__(self) -> int:
        if not self.db.exists():
            return 0
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as connection:
            try:
                row = connection.execute(
                    "SELECT count(*) FROM mailbox WHERE organ_id = ?", (RECIPIENT,)
                ).fetchone()
            except sqlite3.OperationalError:  # not migrated yet
                return 0
        return int(row[0])


def _measure(
    system: str,
    folder: Path,
    config: Path,
    node_id: str,
    packages: list[list[bytes]],
    rates: list[float | None],
) -> list[Run]:
    """Start one system, run each (packages, rate) against it, stop it."""
    process, queue = _start(system, folder, config, node_id)
    try:
        asyncio.run(_ready(queue))
        results = []
        for batch, rate in zip(packages, rates, strict=True):
            counter = (
                _MailboxCount(folder / "store" / "lienthong.db") if system == "lienthong" else None
            )
            results.append(asyncio.run(_offer(queue, batch, rate, counter)))
        return results
    finally:
        process.terminate()
        process.wait(timeout=30)
        asyncio.run(_delete(queue))


def run(*, rounds: int, quick: bool, repeats: int = 3) -> Section:
    """Calibrate lienthong's capacity, then repeat: every system in turn, in a rotated
    order, at capacity and at 25 % and 50 % of the calibrated capacity."""
    repeats = 1 if quick else repeats
    burst, paced_seconds = (60, 1.0) if quick else (1200, 6.0)
    systems = ("lienthong", "raw", "naive")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        node_id = f"bench{uuid.uuid4().hex[:6]}"
        config = _node_config(folder, node_id)
        seed = iter(range(1_000_000))

        def batch(count: int) -> list[bytes]:
            return _packages(folder / "pki", count, f"{next(seed)}-")

        (calibration,) = _measure("lienthong", folder, config, node_id, [batch(burst)], [None])
        rates = [None, calibration.throughput * 0.25, calibration.throughput * 0.5]
        capacity: dict[str, list[float]] = {s: [] for s in systems}
        paced: dict[tuple[str, int], list[Run]] = {}
        for repeat in range(repeats):
            order = systems[repeat % 3 :] + systems[: repeat % 3]
            for system in order:
                batches = [batch(burst)] + [
                    batch(max(20, int(r * paced_seconds))) for r in rates[1:]
                ]  # type: ignore[operator]
                full, quarter, half = _measure(system, folder, config, node_id, batches, rates)
                capacity[system].append(full.throughput)
                paced.setdefault((system, 25), []).append(quarter)
                paced.setdefault((system, 50), []).append(half)
        _report(capacity, paced, repeats, burst)
    return _section(capacity)


METHOD = """### Intake: signed 10 KiB documents

One node's intake of signed 10 KiB documents (RSA-2048, each its own DocumentId, each to
two agencies hosted on the node): fast dedup and a counted attempt (one store round trip),
admission (in the node's worker processes: by default one fewer than the cores, so 1 here;
up to 16 submissions in flight), the blob written and fsynced, one SQLite transaction
(fsynced), acknowledgement, answer; then the relay writes both mailbox rows. Each system
runs as its own process beside the load generator, on the same machine and RabbitMQ.

- **lienthong**: `lienthong serve`, SQLite store, the node's default limits. Capacity is
  measured to the last mailbox row, so it includes the relay.
- **baseline (a)**: a raw aio-pika consumer that inserts each message into SQLite
  (WAL, `synchronous=FULL`, one transaction per message), acknowledges and answers
  (`bench/servers.py raw`).
- **baseline (b)**: (a) plus the admission baseline (see Admission), a naive verifying
  forwarder (`bench/servers.py naive`).
- **target** (issue 4): lienthong's capacity at least 0.7× baseline (b).

Method: lienthong's capacity is calibrated once; then the repeats (`--repeats`), each
running every system in turn, in an order rotated per repeat: capacity (a burst published
at once) and paced load at 25 % and 50 % of the calibrated capacity. Every answer must be
`accepted`, or the run stops. The ratio is taken per repeat.
"""


def _section(capacity: dict[str, list[float]]) -> Section:
    """The page's section: what was printed (the runner keeps it), and the headlines."""
    ours = capacity["lienthong"]
    headlines = []
    for system, label, target in (
        ("naive", "naive forwarder + admission baseline", "≥ 0.7×"),
        ("raw", "raw consumer + fsynced SQLite", ""),
    ):
        ratios = [a / b for a, b in zip(ours, capacity[system], strict=True)]
        headlines.append(
            Headline(
                f"intake, signed 10 KiB, capacity packages/s (baseline: {label})",
                spread(ours, "{:.0f}"),
                spread(capacity[system], "{:.0f}"),
                spread(ratios, "{:.2f}"),
                target,
                statistics.median(ratios) >= 0.7 if target else None,
            )
        )
    return Section("intake", "Intake", "", headlines)


async def _ready(queue: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(queue, durable=True, passive=True)
                if (declared.declaration_result.consumer_count or 0) > 0:
                    return
            except aio_pika.exceptions.ChannelClosed:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"nothing consumes {queue}")


async def _delete(queue: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(queue)
        if queue.startswith("lienthong."):
            for suffix in ("requests", "dead"):
                await channel.queue_delete(queue.replace("inbound", suffix))
            await channel.exchange_delete(queue.replace("inbound", "gate"))


def _report(
    capacity: dict[str, list[float]],
    paced: dict[tuple[str, int], list[Run]],
    repeats: int,
    burst: int,
) -> None:
    names = {
        "lienthong": "lienthong",
        "raw": "(a) raw consumer + fsynced SQLite",
        "naive": "(b) naive forwarder + admission baseline",
    }
    print(METHOD)
    print(
        f"Capacity: {burst} packages published at once; for lienthong, throughput to the last "
        f"mailbox row; for the baselines, to the last answer (their insert is before it). "
        f"{repeats} repeat(s), the systems in turn in a rotated order.\n"
    )
    print("| system | packages/s | lienthong / system, per repeat |")
    print("|---|---|---|")
    ours = capacity["lienthong"]
    for system, values in capacity.items():
        ratios = [a / b for a, b in zip(ours, values, strict=True)]
        print(f"| {names[system]} | {spread(values, '{:.0f}')} | {spread(ratios, '{:.2f}')} |")
    print("\nPaced load at 25 % and 50 % of lienthong's capacity:\n")
    print("| system | offered | achieved packages/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for (system, share), runs in paced.items():
        print(
            f"| {names[system]} | {share} % | {spread([r.throughput for r in runs], '{:.0f}')} "
            f"| {spread([r.p50_ms for r in runs], '{:.1f}')} "
            f"| {spread([r.p99_ms for r in runs], '{:.1f}')} |"
        )
