"""One signed package to 10,000 agencies, over a generated tree of 111 nodes, beside
the same tree built from raw aio-pika, in the same run.

The tree: one central node, 10 provinces, 10 districts under each (111 nodes), packed
round-robin into 4 processes: ``lienthong serve`` with several ``--config`` (admission in
a thread), or bench/fanout_raw.py. 10,000 agencies are spread over the nodes (100 on
central, 90 on each province, 90 on each district), with standard OrganIds
(``DDD.CC.BB.XNN``). An agency of the central node sends documents with a To entry per
recipient and a 10 KiB attachment: to every other agency (5,000), then to every agency
(10,000), the goal; the first shows how the time grows with the list.

Measured per package: the time from the submission to the last mailbox row (the time
the nodes stamp on the rows; completion is watched by polling every store read-only),
the CPU of the node processes over that time (user + system, /proc), and the copies and
bytes that crossed the links (bench/observe.py). Once: lienthong's start and memory.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from adapters.pki_files import load_directory
from bench.documents import numbered, signed_document
from bench.fanout_report import Outcome, Startup, report
from bench.fanout_systems import SENDER, Fanout, LienthongFanout, RawFanout
from bench.observe import rss_mib
from bench.report import Headline, Section
from bench.timing import spread
from bench.tree import BenchNode, cpu_seconds, delete_queues, suffix


@dataclass(frozen=True)
class Shape:
    provinces: int
    districts: int  # under each province
    central_agencies: int
    province_agencies: int
    district_agencies: int
    processes: int
    deadline_s: float  # each package, until every mailbox row is there
    poll_s: float  # how often the stores are read meanwhile

    @property
    def recipients(self) -> int:
        return self.central_agencies + self.provinces * (
            self.province_agencies + self.districts * self.district_agencies
        )


FULL = Shape(10, 10, 100, 90, 90, processes=4, deadline_s=120, poll_s=0.5)
QUICK = Shape(2, 2, 3, 3, 3, processes=2, deadline_s=30, poll_s=0.02)


def generate(shape: Shape, tag: str) -> tuple[list[BenchNode], dict[str, str]]:
    """The nodes (round-robin over the processes) and each agency's home node."""
    central = f"fc-{tag}"
    ids: list[tuple[str, str | None]] = [(central, None)]
    homes = {SENDER: central}
    homes |= {f"000.00.{k:02d}.G02": central for k in range(shape.central_agencies)}
    for p in range(1, shape.provinces + 1):
        province = f"fp{p:02d}-{tag}"
        ids.append((province, central))
        # the province itself, then its departments (level-2 codes after the districts')
        units = [0, *range(shape.districts + 1, 100)][: shape.province_agencies]
        homes |= {f"000.00.{k:02d}.H{p:02d}": province for k in units}
        for d in range(1, shape.districts + 1):
            district = f"fd{p:02d}{d:02d}-{tag}"
            ids.append((district, province))
            # the district itself, then its communes
            homes |= {
                f"000.{c:02d}.{d:02d}.H{p:02d}": district for c in range(shape.district_agencies)
            }
    nodes = [
        BenchNode(node, parent, process=index % shape.processes)
        for index, (node, parent) in enumerate(ids)
    ]
    return nodes, homes


def run(*, rounds: int, quick: bool, repeats: int = 3) -> Section:
    """Both trees up side by side. For each package size in turn, repeats of: each system
    once, the order alternating. A system that does not deliver everything within the
    deadline is not asked again (its tree keeps retrying what it holds). ``rounds`` is not
    used."""
    del rounds
    shape = QUICK if quick else FULL
    repeats = 1 if quick else repeats
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tag = suffix()
        nodes, homes = generate(shape, tag)
        began = time.perf_counter()
        ours = LienthongFanout(folder / "lienthong", nodes, homes)
        files_s = time.perf_counter() - began
        began = time.perf_counter()
        load_directory(ours.tree.pki / "directory.toml")
        directory_s = time.perf_counter() - began
        base = RawFanout(folder / "raw", nodes, homes, tag)
        systems: tuple[Fanout, ...] = (base, ours)
        key = ours.tree.key(SENDER)
        everyone = [organ for organ in homes if organ != SENDER]
        one_per_node = list({homes[organ]: organ for organ in everyone}.values())
        results: dict[tuple[str, int], list[Outcome]] = {}
        failed: set[str] = set()
        numbers = iter(range(1_000_000))
        try:
            began = time.perf_counter()
            ours.start()
            asyncio.run(ours.ready(shape.deadline_s))
            ready_s = time.perf_counter() - began
            base.start()
            asyncio.run(base.ready(shape.deadline_s))
            rss_ready = rss_mib(ours.pids())
            for recipients in (one_per_node, everyone[::2], everyone):
                template = signed_document(SENDER, recipients, key)
                for repeat in range(1 if recipients is one_per_node else repeats):
                    for system in systems if repeat % 2 == 0 else systems[::-1]:
                        if system.name in failed:
                            continue
                        (data,) = numbered(template, key, 1, f"-{next(numbers)}-")
                        outcome = asyncio.run(watch(system, data, recipients, homes, shape))
                        if recipients is one_per_node:
                            continue  # a warm-up: every node's first package
                        results.setdefault((system.name, len(recipients)), []).append(outcome)
                        if outcome.seconds is None:
                            failed.add(system.name)
            rss_after = rss_mib(ours.pids())
        finally:
            for system in systems:
                system.stop()
            asyncio.run(delete_queues([q for s in systems for q in s.queues()]))
        startup = Startup(files_s, directory_s, ready_s, rss_ready, rss_after)
        report(shape_text(shape), shape.deadline_s, results, startup)
    return _section(results, shape.deadline_s)


def _section(results: dict[tuple[str, int], list[Outcome]], deadline_s: float) -> Section:
    """The headline: the widest package's time to its last mailbox, beside the raw tree's."""
    widest = max(size for _, size in results)
    ours = results.get(("lienthong", widest), [])
    raw = results.get(("raw aio-pika tree", widest), [])
    seconds = [o.seconds for o in ours if o.seconds is not None]
    base = [o.seconds for o in raw if o.seconds is not None]
    complete = bool(ours) and len(seconds) == len(ours)
    ratios = [a / b for a, b in zip(seconds, base, strict=False)]
    return Section(
        "fanout",
        "Fan-out",
        "",
        [
            Headline(
                f"one package to {widest:,} agencies, s to the last mailbox (baseline: raw tree)",
                spread(seconds, "{:.2f}") if complete else f"not all within {deadline_s:.0f} s",
                spread(base, "{:.2f}") if base else "–",
                spread(ratios, "{:.1f}") if complete and ratios else "–",
                "≤ 60 s",
                complete and max(seconds) <= 60,
            )
        ],
    )


def shape_text(shape: Shape) -> str:
    nodes = 1 + shape.provinces * (1 + shape.districts)
    return (
        f"{nodes} nodes (1 central, {shape.provinces} provinces, "
        f"{shape.provinces * shape.districts} districts) in {shape.processes} processes, "
        f"{shape.recipients:,} agencies"
    )


async def watch(
    system: Fanout, data: bytes, recipients: list[str], homes: dict[str, str], shape: Shape
) -> Outcome:
    """Submit one package at the central node; poll until every mailbox row is there."""
    expected = Counter(homes[organ] for organ in recipients)
    lost_before = len(system.lost_connections())
    cpu_before = cpu_seconds(system.pids())
    submitted = time.time()
    key = await system.submit(data)
    found: dict[str, tuple[int, float | None]] = {}
    deadline = time.monotonic() + shape.deadline_s
    while time.monotonic() < deadline:
        for node, count in expected.items():
            if found.get(node, (0, None))[0] < count:
                found[node] = system.rows(node, key)
        if all(found[n][0] >= c for n, c in expected.items()):
            break
        await asyncio.sleep(shape.poll_s)
    cpu = cpu_seconds(system.pids()) - cpu_before
    complete = all(found[n][0] >= c for n, c in expected.items())
    last = max((at for _, at in found.values() if at is not None), default=submitted)
    per_level: dict[str, tuple[int, int]] = {}
    for node, count in expected.items():
        level = {"fc": "central", "fp": "provinces", "fd": "districts"}[node[:2]]
        got, want = per_level.get(level, (0, 0))
        per_level[level] = (got + found[node][0], want + count)
    return Outcome(
        recipients=len(recipients),
        size=len(data),
        delivered=sum(rows for rows, _ in found.values()),
        seconds=last - submitted if complete else None,
        cpu_s=cpu,
        per_level=per_level,
        links=system.copies(key),
        lost_connections=system.lost_connections()[lost_before:],
    )
