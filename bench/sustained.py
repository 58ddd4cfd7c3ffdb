"""A sustained load: one node at 70 % of its measured peak for minutes, memory and latency
over time, beside the naive forwarder at the same rate.

- **lienthong**: ``lienthong serve`` (SQLite store, the node's default limits: one
  admission worker process on 2 cores) takes signed 10 KiB documents on its inbound queue,
  as in the intake scenario (bench/intake.py): dedup, admission, commit, ack, answer; the
  relay then writes the mailbox rows.
- **baseline**: the naive forwarder (bench/servers.py ``naive``): the admission baseline,
  an fsynced SQLite insert, ack, answer.

Lienthong's peak is calibrated first (a burst published at once, to the last mailbox row);
the rate offered to both systems is 70 % of it. Every package is signed before the load
starts, in a pool of processes (each signature costs about a millisecond of CPU, which
would otherwise be taken from the systems measured; ten minutes at 220/s is 130,000
packages, 1.4 GB held by the load generator); the baseline takes the same packages (it keeps
no dedup index). The systems run one after the other, lienthong first: two
sustained loads at once would overload the 2 cores. Every ``WINDOW_S`` the load generator
reads, from /proc, the resident memory (VmRSS) and CPU time of each process of the system
under load, the CPU time of the whole machine (what other tenants take shows), and the size
of the system's store. Latency is timed from publish to answer and, for lienthong, to the
time stamped on its mailbox row, read from the store once the load is over (polling the
store during the load cost the generator a seventh of a core).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aio_pika

from bench.admission import make_package
from bench.documents import numbered
from bench.intake import (
    AMQP_URL,
    RECIPIENT,
    _delete,
    _MailboxCount,
    _node_config,
    _offer,
    _packages,
    _ready,
    _start,
    sender_key,
)
from bench.report import Section
from bench.sustained_report import Signing, report
from bench.tree import cpu_seconds

SHARE = 0.7  # of the calibrated peak
WINDOW_S, QUICK_WINDOW_S = 10.0, 3.0
QUICK_MINUTES = 0.3
DRAIN_S = 120.0  # after the last publish, for the last answers and rows (and a share)
SIGNERS = 2  # processes that sign the packages ahead of the load
CHUNK = 500


@dataclass
class Sample:
    """What the system held at one moment: resident memory per process, store bytes."""

    at: float  # seconds from the start of the load
    rss: dict[str, int]  # process label -> bytes
    store: dict[str, int]  # file or folder -> bytes
    cpu: dict[str, float]  # process label -> CPU seconds used so far
    busy: float  # CPU seconds the machine has been busy (every process)
    broker: float  # CPU seconds of RabbitMQ (shared with every other user of the broker)
    generator: float  # CPU seconds of the load generator (this process)


@dataclass
class Trace:
    """One system's sustained run: every package's times (seconds from the start of the
    load) and the samples."""

    system: str
    rate: float  # offered, packages/s
    seconds: float
    window: float
    peak: float = 0.0  # its burst's throughput, packages/s
    sent: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # publish time behind its schedule
    answered: list[float] = field(default_factory=list)
    arrived: list[float] | None = None  # the mailbox row written (lienthong)
    samples: list[Sample] = field(default_factory=list)


# --- the processes measured ------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _label(pid: int, root: int, system: str) -> str:
    if pid == root:
        return "node" if system == "lienthong" else "naive forwarder"
    command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    if b"resource_tracker" in command:
        return "resource tracker"
    if b"adapters.admission_worker" in command or b"multiprocessing" in command:
        return "admission worker"
    return f"child {pid}"


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _cpu(pid: int) -> float:
    """User + system CPU seconds of one process (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(root: int, system: str) -> tuple[dict[str, int], dict[str, float]]:
    """VmRSS and CPU seconds of ``root`` and each of its descendants, by label (numbered
    when repeated)."""
    rss: dict[str, int] = {}
    cpu: dict[str, float] = {}
    for pid in _tree(root):
        with contextlib.suppress(OSError):  # a worker that ended just now
            label = _label(pid, root, system)
            name, n = label, 1
            while name in rss:
                n += 1
                name = f"{label} {n}"
            rss[name], cpu[name] = _rss(pid), _cpu(pid)
    return rss, cpu


async def _sizes(files: dict[str, Path]) -> dict[str, int]:
    """Bytes of each file, or of each folder's files (``du``, in its own process, so that
    walking the blob folder never stalls the publisher)."""
    out = {}
    for name, path in files.items():
        if path.is_dir():
            du = await asyncio.create_subprocess_exec(
                "du", "-sb", str(path), stdout=asyncio.subprocess.PIPE
            )
            stdout, _ = await du.communicate()
            out[name] = int(stdout.split()[0]) if du.returncode == 0 else 0
        else:
            out[name] = path.stat().st_size if path.exists() else 0
    return out


# --- the packages ----------------------------------------------------------------------


def _sign_chunk(pki: str, template: bytes, seed: str, start: int, count: int) -> list[bytes]:
    key = sender_key(Path(pki))
    return numbered(template, key, count, f"{seed}{start}-")


def presign(pki: Path, count: int, seed: str) -> tuple[list[bytes], Signing]:
    """``count`` distinct signed 10 KiB documents, signed in ``SIGNERS`` processes."""
    template = make_package(10 * 1024, sender_key(pki))
    began = time.perf_counter()
    one = _sign_chunk(str(pki), template, f"{seed}t", 0, 50)  # the cost in one process
    per_package = (time.perf_counter() - began) / len(one)
    began = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(SIGNERS, mp_context=context) as pool:
        chunks = [
            pool.submit(_sign_chunk, str(pki), template, seed, start, min(CHUNK, count - start))
            for start in range(0, count, CHUNK)
        ]
        packages = [data for chunk in chunks for data in chunk.result()]
    return packages, Signing(count, per_package, time.perf_counter() - began, SIGNERS)


# --- the load --------------------------------------------------------------------------


async def sustain(
    system: str,
    queue: str,
    packages: list[bytes],
    rate: float,
    window: float,
    process: subprocess.Popen[bytes],
    store: dict[str, Path],
    mailbox: Path | None,
) -> Trace:
    """Publish ``packages`` at ``rate``, paced; time each answer; sample memory, CPU and
    store every ``window`` seconds; with ``mailbox`` (the node's database), read when each
    mailbox row was written. Stops with an error on any refusal."""
    count = len(packages)
    trace = Trace(system, rate, count / rate, window, sent=[math.nan] * count)
    trace.late = [math.nan] * count
    trace.answered = [math.nan] * count
    ids: list[str] = [""] * count
    refused: list[str] = []
    answers = 0
    all_answered = asyncio.Event()
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        channel = await connection.channel()
        replies = await channel.declare_queue(
            f"lienthong.reply.bench-{uuid.uuid4().hex}", exclusive=True
        )

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal answers
            index = int(message.correlation_id or "-1")
            trace.answered[index] = time.perf_counter() - start
            answer = json.loads(message.body)
            if answer.get("outcome") != "accepted":
                refused.append(str(answer))
            ids[index] = str(answer.get("message_id"))
            await message.ack()
            answers += 1
            if answers == count:
                all_answered.set()

        await replies.consume(on_reply)
        broker = _broker()
        start, wall = time.perf_counter(), time.time()

        async def publish() -> None:
            for index, data in enumerate(packages):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if refused:
                    raise RuntimeError(f"{system} refused packages: {refused[:3]}")
                now = time.perf_counter() - start
                trace.sent[index], trace.late[index] = now, now - index / rate
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        data,
                        correlation_id=str(index),
                        reply_to=replies.name,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=queue,
                )

        async def sample(at: float) -> None:
            if process.poll() is not None:
                raise RuntimeError(f"{system} exited ({process.returncode}) under load")
            rss, cpu = processes(process.pid, system)
            trace.samples.append(
                Sample(
                    at,
                    rss,
                    await _sizes(store),
                    cpu=cpu,
                    busy=_busy_seconds(),
                    broker=cpu_seconds(broker),
                    generator=time.process_time(),
                )
            )

        async def watch() -> None:
            # whole windows; the last takes the rest (half a window to one and a half)
            boundaries = [k * window for k in range(max(1, round(trace.seconds / window)))]
            for at in [*boundaries, trace.seconds]:
                await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
                await sample(at)

        try:
            async with asyncio.timeout(trace.seconds + DRAIN_S), asyncio.TaskGroup() as group:
                group.create_task(publish())
                group.create_task(watch())
        except TimeoutError:
            published = sum(1 for t in trace.sent if not math.isnan(t))
            raise RuntimeError(
                f"{system}: only {published} of {count} packages published "
                f"{DRAIN_S:.0f} s after the last was due (is the broker blocking publishers?)"
            ) from None
        drain = DRAIN_S + trace.seconds / 4  # a system a fifth slower than offered drains
        try:
            async with asyncio.timeout(drain):
                await all_answered.wait()
                if mailbox is not None:
                    written = await _written(mailbox, ids)
                    trace.arrived = [written[i] - wall for i in ids]
        except TimeoutError:
            raise RuntimeError(
                f"{system}: {answers} of {count} packages answered (or not all in the "
                f"mailbox) {drain:.0f} s after the last publish"
            ) from None
        if refused:
            raise RuntimeError(f"{system} refused packages: {refused[:3]}")
    return trace


async def _written(db: Path, ids: list[str]) -> dict[str, float]:
    """When each message's mailbox row (of the recipient) was written, as the node stamped
    it (``delivered_at``, taken just before the transaction that writes it): read once the
    load is over, so that reading costs the system measured nothing."""
    wanted = set(ids)
    while True:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            rows = connection.execute(
                "SELECT message_id, delivered_at FROM mailbox WHERE organ_id = ?", (RECIPIENT,)
            ).fetchall()
        connection.close()
        found = {m: datetime.fromisoformat(at).timestamp() for m, at in rows if m in wanted}
        if len(found) == len(wanted):
            return found
        await asyncio.sleep(0.1)


def _broker() -> list[int]:
    """The local RabbitMQ's processes (the Erlang VM), whose CPU is shown apart."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "beam.smp":
                found.append(int(entry.name))
    return found


def _busy_seconds() -> float:
    """CPU time the whole machine spent busy (all cores, any process), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _burst(queue: str, packages: list[bytes], counter: _MailboxCount | None) -> float:
    """Throughput of a burst published at once (to the last mailbox row with ``counter``)."""
    if counter is not None:
        counter.start = counter()
    return asyncio.run(_offer(queue, packages, None, counter)).throughput


def _stop(process: subprocess.Popen[bytes], queue: str) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    asyncio.run(_delete(queue))


def _system(
    system: str,
    folder: Path,
    config: Path,
    node_id: str,
    warm: list[bytes],
    burst: list[bytes],
    load: Callable[[float], tuple[list[bytes], float]],
    window: float,
) -> Trace:
    """Start ``system``, warm it, time a burst, then the sustained load (``load(peak)``
    gives its packages and rate); stop it."""
    process, queue = _start(system, folder, config, node_id)
    try:
        asyncio.run(_ready(queue))
        db = folder / "store" / "lienthong.db"
        counter = _MailboxCount(db) if system == "lienthong" else None
        _burst(queue, warm, counter)
        peak = _burst(queue, burst, counter)
        packages, rate = load(peak)  # signed while the system is idle
        if system == "lienthong":
            store = {
                "lienthong.db": db,
                "lienthong.db-wal": db.with_name("lienthong.db-wal"),
                "blobs": db.with_name("blobs"),
            }
            mailbox: Path | None = db
        else:
            naive = folder / "naive.db"
            store = {"naive.db": naive, "naive.db-wal": naive.with_name("naive.db-wal")}
            mailbox = None
        trace = asyncio.run(sustain(system, queue, packages, rate, window, process, store, mailbox))
        trace.peak = peak
        return trace
    finally:
        _stop(process, queue)


def run(*, quick: bool, minutes: float = 10.0, plots: Path | None = None) -> Section:
    """Lienthong: warm, calibrate its peak, sustain 70 % of it for ``minutes``; then the
    naive forwarder: warm, the same burst, the same packages at the same rate."""
    minutes = min(minutes, QUICK_MINUTES) if quick else minutes
    window = QUICK_WINDOW_S if quick else WINDOW_S
    warm_count, burst_count = (30, 100) if quick else (200, 1200)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        node_id = f"bench{uuid.uuid4().hex[:6]}"
        config = _node_config(folder, node_id)
        pki = folder / "pki"
        warm = _packages(pki, warm_count, "warm-")
        burst = _packages(pki, burst_count, "burst-")
        signed: list[tuple[list[bytes], float, Signing]] = []

        def load(peak: float) -> tuple[list[bytes], float]:
            if not signed:  # lienthong's peak; the baseline takes the same packages and rate
                rate = SHARE * peak
                packages, signing = presign(pki, max(10, round(rate * minutes * 60)), "load-")
                signed.append((packages, rate, signing))
            packages, rate, _ = signed[0]
            return packages, rate

        traces = {
            system: _system(system, folder, config, node_id, warm, burst, load, window)
            for system in ("lienthong", "naive")
        }
    return report(traces, signed[0][2], SHARE, plots)
