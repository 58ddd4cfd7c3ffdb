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

Both (bench/chain.py, 4 nodes) run side by side for the whole scenario. Latency is from
the publish of the submission to the moment the row (the central mailbox row, the
baseline's inserted row) is seen by a read-only reader of that SQLite file polling every
2 ms. Capacity: a burst published at once, to the last row. Paced: 25 % of lienthong's
capacity (calibrated once at the start), the same rate for both.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import tempfile
from pathlib import Path

from bench import hops
from bench.arrivals import Run
from bench.chain import SENDER, Forwarders, Lienthong, System, offer
from bench.documents import numbered, signed_document
from bench.report import Headline, Section
from bench.route_report import report, report_cpu
from bench.timing import spread
from bench.tree import cpu_seconds, delete_queues


def run(*, rounds: int, quick: bool, repeats: int = 3) -> Section:
    """Both systems up side by side; lienthong's capacity calibrated once; then, per
    repeat, each system in turn (the order alternating): capacity, then paced load at
    25 % of the calibrated capacity. ``rounds`` is not used: the route repeats 3 times."""
    del rounds
    repeats = 1 if quick else repeats
    burst, paced_seconds, least = (20, 0.5, 10) if quick else (1000, 10.0, 20)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ours = Lienthong(folder, nodes=4, admission_workers=0 if quick else None)
        base = Forwarders(folder, nodes=4)
        systems: tuple[System, ...] = (ours, base)
        key = ours.tree.key(SENDER)
        template = signed_document(SENDER, [ours.recipient], key)
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
            legs = hops.legs(ours.tree.database(ours.top), ours.recipient, walls)
        finally:
            for system in systems:
                system.stop()
            asyncio.run(delete_queues([q for s in systems for q in s.queues()]))
        roles = {node_id: level for level, node_id in ours.ids.items()}
        print(METHOD)
        report(capacity, paced, rate, count, burst, calibration, legs, roles)
        report_cpu(cpu)
    return _section(capacity, paced)


METHOD = """### Route (4 hops): signed 10 KiB documents, commune → … → central

Signed 10 KiB documents (RSA-2048, each its own DocumentId) from a commune agency to an
agency on the central node, across commune → district → province → central.

- **lienthong**: four `lienthong serve` processes, one node each, SQLite stores, linked as
  in production (each child opens its link on its parent's broker; here all four share the
  local RabbitMQ). The commune node admits (its default admission workers); each node
  commits the package, signs its hop record and relays it; the central node writes the
  mailbox row. Log level `warning`.
- **baseline**: four raw aio-pika processes (`bench/forwarder.py`): three forwarders, each
  consuming a queue and publishing to the next (persistent, publisher confirm awaited, then
  the ack), and a sink that inserts each message into SQLite (`synchronous = FULL`).
- **target** (issue 5): lienthong adds under 30 ms to the baseline's p50 latency at 25 % of
  the route's capacity.

Both systems run side by side for the whole scenario. Latency is from the publish of a
submission to the moment its row is seen by a read-only reader polling the SQLite file every
2 ms (the same for both). lienthong's capacity is calibrated once; then the repeats, each
system in turn, the order alternating: capacity (a burst at once), then paced load at 25 %
of the calibrated capacity."""


def _section(capacity: dict[str, list[float]], paced: dict[str, list[Run]]) -> Section:
    ours, base = capacity
    added = [a.p50_ms - b.p50_ms for a, b in zip(paced[ours], paced[base], strict=True)]
    ratios = [a / b for a, b in zip(capacity[ours], capacity[base], strict=True)]
    return Section(
        "route",
        "Route (4 hops)",
        "",
        [
            Headline(
                "4-hop route, signed 10 KiB, p50 ms at 25 % load (ratio column: ms added)",
                spread([r.p50_ms for r in paced[ours]], "{:.1f}"),
                spread([r.p50_ms for r in paced[base]], "{:.1f}"),
                "+" + spread(added, "{:.1f}") + " ms",
                "< +30 ms",
                statistics.median(added) < 30,
            ),
            Headline(
                "4-hop route, signed 10 KiB, capacity packages/s (baseline: raw forwarders)",
                spread(capacity[ours]),
                spread(capacity[base]),
                spread(ratios, "{:.2f}"),
            ),
        ],
    )
