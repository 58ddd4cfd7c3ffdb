"""Package size: signed packages of 1 KiB to 1 MiB through one hop and through the 4-hop
route, each beside a naive verifying forwarder and raw aio-pika forwarders, in one run.

Chains of bench/chain.py: one hop is commune -> district (2 nodes), the 4-hop route is
commune -> district -> province -> central (4 nodes). For each chain, three systems run
side by side:

- **lienthong**: a ``lienthong serve`` per node, linked as in production; the commune node
  admits with its default admission workers; the top node writes the mailbox row.
- **naive verifying forwarder**: a raw aio-pika process per node; the first verifies each
  package as bench/admission.py's baseline does, then forwards it; the last inserts it
  into an fsynced SQLite table.
- **raw aio-pika forwarders**: the same without the verification.

Per chain, lienthong's capacity is calibrated once per size; then, per repeat, each size
in turn and each system in turn (the order rotated every repeat), the same packages for
all three: capacity (a burst published at once, to the last row) and paced load at 25 %
of lienthong's calibrated capacity at that size (latency from publish to row).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import tempfile
from pathlib import Path

from bench import hops
from bench.chain import SENDER, Forwarders, Lienthong, System, offer
from bench.documents import numbered, signed_document
from bench.report import Section
from bench.sizes_report import Cell, Plan, Sweep, report
from bench.tree import cpu_seconds, delete_queues

KiB, MiB = 1024, 1024 * 1024
SIZES = {"1 KiB": KiB, "10 KiB": 10 * KiB, "100 KiB": 100 * KiB, "1 MiB": MiB}
QUICK_SIZES = ("1 KiB", "100 KiB")
CHAINS = (2, 4)  # nodes: one hop, the 4-hop route
BURST = {"1 KiB": 200, "10 KiB": 200, "100 KiB": 100, "1 MiB": 24}  # a few seconds each
QUICK_BURST = 12
BURST_BYTES = 48 * MiB  # the most one burst (or one paced run) carries
PACED_S, LEAST = 3.0, 12  # paced runs: about this long, at least this many packages
QUICK_PACED_S, QUICK_LEAST = 0.5, 6
WARM = 10  # 10 KiB packages through every system before anything is measured


def _plan(quick: bool) -> Plan:
    labels = QUICK_SIZES if quick else tuple(SIZES)
    bursts = {
        label: QUICK_BURST if quick else min(BURST[label], BURST_BYTES // SIZES[label])
        for label in labels
    }
    return Plan(
        sizes={label: SIZES[label] for label in labels},
        bursts=bursts,
        paced_s=QUICK_PACED_S if quick else PACED_S,
        least=QUICK_LEAST if quick else LEAST,
        most_bytes=BURST_BYTES,
    )


def _say(text: str) -> None:
    print(f"sizes: {text}", file=sys.stderr, flush=True)


def _sweep(folder: Path, nodes: int, plan: Plan, repeats: int) -> Sweep:
    """One chain: its three systems up side by side, every size, every repeat."""
    ours = Lienthong(folder, nodes)
    naive = Forwarders(folder, nodes, verify=ours.tree.pki / "ca.pem")
    raw = Forwarders(folder, nodes)
    systems: tuple[System, ...] = (ours, naive, raw)
    key = ours.tree.key(SENDER)
    templates = {
        label: signed_document(SENDER, [ours.recipient], key, size)
        for label, size in {**plan.sizes, "warm": 10 * KiB}.items()
    }
    seeds = itertools.count()

    def batch(label: str, count: int) -> list[bytes]:
        return numbered(templates[label], key, count, f"{next(seeds)}-")

    sweep = Sweep(nodes=nodes, plan=plan)
    walls: dict[str, dict[str, float]] = {label: {} for label in plan.sizes}
    try:
        for system in systems:
            system.start()
        for system in systems:
            asyncio.run(system.ready())
            asyncio.run(offer(system, batch("warm", WARM), None))  # connections, files, pools
        for label in plan.sizes:
            calibration, _ = asyncio.run(offer(ours, batch(label, plan.bursts[label]), None))
            sweep.calibrate(label, calibration.throughput)
            _say(f"{nodes} nodes, {label}: lienthong calibrated at {calibration.throughput:.0f}/s")
        for repeat in range(repeats):
            order = systems[repeat % 3 :] + systems[: repeat % 3]
            for label in plan.sizes:
                burst = batch(label, plan.bursts[label])
                paced = batch(label, sweep.counts[label])
                sweep.bytes[label] = sum(map(len, burst + paced)) / len(burst + paced)
                for system in order:
                    pids = list(system.pids().values())
                    before = cpu_seconds(pids)
                    full, _ = asyncio.run(offer(system, burst, None))
                    cpu_ms = (cpu_seconds(pids) - before) / len(burst) * 1000
                    quarter, submitted = asyncio.run(offer(system, paced, sweep.rates[label]))
                    walls[label].update(submitted)
                    cell = sweep.cells.setdefault((label, system.name), Cell())
                    cell.add(full, quarter, cpu_ms)
                    _say(
                        f"{nodes} nodes, {label}, repeat {repeat + 1}: {system.name} "
                        f"{full.throughput:.0f}/s, p50 {quarter.p50_ms:.1f} ms"
                    )
        for label in plan.sizes:
            sweep.legs[label] = hops.legs(
                ours.tree.database(ours.top), ours.recipient, walls[label]
            )
        sweep.roles = {node_id: level for level, node_id in ours.ids.items()}
    finally:
        for system in systems:
            system.stop()
        asyncio.run(delete_queues([q for s in systems for q in s.queues()]))
    return sweep


def run(*, quick: bool, repeats: int = 3, plots: Path | None = None) -> Section:
    """Each chain in turn (one hop, then the 4-hop route), its three systems side by side."""
    repeats = 1 if quick else repeats
    plan = _plan(quick)
    with tempfile.TemporaryDirectory() as tmp:
        sweeps = [_sweep(Path(tmp) / f"chain-{nodes}", nodes, plan, repeats) for nodes in CHAINS]
    return report(sweeps, repeats, plots)
