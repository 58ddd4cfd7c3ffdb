"""The sizes scenario's figures and its report: tables per chain, headlines, plots
(bench/sizes.py measures them)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from bench.arrivals import Run
from bench.plots import lines
from bench.report import Headline, Section
from bench.timing import spread
from exchange.config import default_admission_workers

SYSTEMS = ("lienthong", "naive verifying forwarder", "raw aio-pika forwarders")
OURS, NAIVE, RAW = SYSTEMS
CHAIN_NAMES = {2: "one hop", 4: "4-hop route"}
CHAIN_PATHS = {2: "commune → district", 4: "commune → district → province → central"}
TARGET = 0.7  # issue 10: intake + one hop, 10 KiB, at least 0.7x the naive verifying forwarder


@dataclass(frozen=True)
class Plan:
    sizes: dict[str, int]  # label -> the size asked of make_package, bytes
    bursts: dict[str, int]  # label -> packages published at once
    paced_s: float  # a paced run lasts about this long
    least: int  # and has at least this many packages
    most_bytes: int  # and carries at most this many bytes


@dataclass
class Cell:
    """One system at one size on one chain, over the repeats."""

    capacity: list[Run] = field(default_factory=list)
    paced: list[Run] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # CPU per package in the capacity runs

    def add(self, capacity: Run, paced: Run, cpu_ms: float) -> None:
        self.capacity.append(capacity)
        self.paced.append(paced)
        self.cpu_ms.append(cpu_ms)


@dataclass
class Sweep:
    """One chain's measurements."""

    nodes: int
    plan: Plan
    rates: dict[str, float] = field(default_factory=dict)  # label -> paced packages/s
    counts: dict[str, int] = field(default_factory=dict)  # label -> packages per paced run
    bytes: dict[str, float] = field(default_factory=dict)  # label -> mean package bytes
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # (label, system)
    legs: dict[str, list[tuple[str, float]]] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)  # node id -> level

    def calibrate(self, label: str, capacity: float) -> None:
        """Paced load at 25 % of lienthong's capacity at this size."""
        plan = self.plan
        self.rates[label] = capacity * 0.25
        most = max(1, plan.most_bytes // plan.sizes[label])
        self.counts[label] = min(most, max(plan.least, int(self.rates[label] * plan.paced_s)))

    def capacity(self, label: str, system: str) -> list[float]:
        return [r.throughput for r in self.cells[label, system].capacity]

    def mbps(self, label: str, system: str) -> list[float]:
        return [t * self.bytes[label] / 1e6 for t in self.capacity(label, system)]

    def ratios(self, label: str, system: str) -> list[float]:
        ours = self.capacity(label, OURS)
        return [a / b for a, b in zip(ours, self.capacity(label, system), strict=True)]

    @property
    def name(self) -> str:
        return CHAIN_NAMES.get(self.nodes, f"{self.nodes} nodes")


def _fig(values: list[float]) -> str:
    middle = statistics.median(values)
    return spread(values, "{:.0f}" if middle >= 10 else "{:.1f}" if middle >= 1 else "{:.2f}")


def _method(sweeps: list[Sweep], repeats: int) -> list[str]:
    plan = sweeps[0].plan
    smallest = min(plan.sizes, key=plan.sizes.__getitem__)
    actual = sweeps[0].bytes[smallest]
    workers = default_admission_workers()
    return [
        "Signed edXML documents of four sizes (bench/admission.py's `make_package`: the "
        "example new document, readdressed, with an incompressible attachment sized to fit; "
        "RSA-2048; each its own DocumentId) from the commune agency `000.21.31.H53` to the "
        "agency on the top node of a chain: **one hop** is commune → district (two nodes, one "
        "link, to `000.00.31.H53`); the **4-hop route** is commune → district → province → "
        "central (four nodes, three links, to `000.00.00.G22`), as in the route section. "
        f"The smallest signed package `make_package` can make is {actual:,.0f} bytes (the "
        "signature with its certificate and the example document's header), so the row named "
        f"{smallest} carries that; the bytes column gives every size as sent.",
        "",
        "- **lienthong**: one `lienthong serve` per node (SQLite store), each child linked to "
        "its parent as in production. The commune node admits with its default admission "
        f"workers ({workers} process{'es' if workers != 1 else ''} here), commits, seals the "
        "envelope and relays; each node above checks the envelope, commits, signs its hop "
        "record and relays; the top node writes the mailbox row.",
        "- **naive verifying forwarder**: one raw aio-pika process per node "
        "(bench/forwarder.py). The first verifies each package as the admission section's "
        "baseline does (hardened lxml parse, structural XSD, attachments decoded and hashed, "
        "signxml verify chained to the same CA) in a thread, then forwards it (persistent, "
        "publisher confirm awaited, then the ack), one message at a time; the next ones "
        "forward it raw; the last inserts it into an SQLite table (WAL, `synchronous = "
        "FULL`, one transaction per message).",
        "- **raw aio-pika forwarders**: the same without the verification: what carrying the "
        "bytes costs at least.",
        "",
        "The three systems of a chain run side by side; the chains are measured one after "
        "the other. lienthong's capacity at each size is calibrated once; then "
        f"{repeats} repeat(s): each size in turn, each system in turn (the order rotated "
        "every repeat), the same packages for all three: capacity (a burst published at "
        "once; the count per size below, at most "
        f"{plan.most_bytes // (1024 * 1024)} MiB; throughput from the first publish to the "
        "last row seen), then paced load at 25 % of lienthong's calibrated capacity at that "
        f"size, for about {plan.paced_s:g} s and at least {plan.least} packages. Latency is "
        "from the publish to the row (lienthong's mailbox row, the baselines' inserted row) "
        "seen by a read-only reader polling the SQLite file every 2 ms; with so few packages "
        "per paced run, p99 is about the slowest one. Ratios are taken repeat by repeat. "
        "MB/s is packages/s × the package's bytes / 10⁶. Every answer must be `accepted` and "
        "every process alive, or the run stops. CPU per package is user + system from /proc "
        "over the capacity runs, all the system's processes (and lienthong's admission "
        "workers) together; RabbitMQ and the load generator not.",
    ]


def _chain(sweep: Sweep) -> list[str]:
    plan, labels = sweep.plan, list(sweep.plan.sizes)
    out = [
        "",
        f"### {sweep.name.capitalize()}: {CHAIN_PATHS.get(sweep.nodes, '')}",
        "",
        "| package | system | capacity, packages/s | capacity, MB/s "
        "| lienthong / system, per repeat | paced p50 ms | paced p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for label in labels:
        for system in SYSTEMS:
            cell = sweep.cells[label, system]
            ratio = "" if system == OURS else spread(sweep.ratios(label, system), "{:.2f}")
            out.append(
                f"| {label} | {system} | {_fig(sweep.capacity(label, system))} "
                f"| {_fig(sweep.mbps(label, system))} | {ratio} "
                f"| {spread([r.p50_ms for r in cell.paced], '{:.1f}')} "
                f"| {spread([r.p99_ms for r in cell.paced], '{:.1f}')} |"
            )
    out += [
        "",
        "| package | bytes | burst | paced at, packages/s | packages per paced run |",
        "|---|---|---|---|---|",
    ]
    for label in labels:
        out.append(
            f"| {label} | {sweep.bytes[label]:,.0f} | {plan.bursts[label]} "
            f"| {sweep.rates[label]:.1f} | {sweep.counts[label]} |"
        )
    out += ["", "CPU per package in the capacity runs, ms:", ""]
    out += ["| package | " + " | ".join(SYSTEMS) + " |", "|---|" + "---|" * len(SYSTEMS)]
    for label in labels:
        cpu = [spread(sweep.cells[label, s].cpu_ms, "{:.2f}") for s in SYSTEMS]
        out.append(f"| {label} | " + " | ".join(cpu) + " |")
    legs = [name for name, _ in next(iter(sweep.legs.values()), [])]
    if legs:
        out += [
            "",
            "Where lienthong's time goes in the paced runs (median ms per leg, from the hop "
            "records each node signs; millisecond grain):",
            "",
            "| leg | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        for index, name in enumerate(legs):
            for node_id, level in sweep.roles.items():
                name = name.replace(node_id, level)
            values = [f"{sweep.legs[label][index][1]:.1f}" for label in labels]
            out.append(f"| {name} | " + " | ".join(values) + " |")
    return out


def headlines(sweeps: list[Sweep]) -> list[Headline]:
    """Issue 10's: one hop at 10 KiB against the naive verifying forwarder (target 0.7×)
    and the raw forwarders; each chain at 1 MiB against the raw forwarders. A quick run
    has neither size: it stands in its nearest."""
    out = []
    first = next(s for s in sweeps if s.nodes == 2)
    labels = list(first.plan.sizes)
    small = "10 KiB" if "10 KiB" in labels else labels[0]
    for system in (NAIVE, RAW):
        ratios = first.ratios(small, system)
        met = statistics.median(ratios) >= TARGET if system == NAIVE else None
        out.append(
            Headline(
                measure=f"intake + one hop, signed {small}: capacity vs {system}, packages/s",
                ours=_fig(first.capacity(small, OURS)),
                baseline=_fig(first.capacity(small, system)),
                ratio=spread(ratios, "{:.2f}"),
                target=f"≥ {TARGET}×" if system == NAIVE else "",
                met=met,
            )
        )
    large = "1 MiB" if "1 MiB" in labels else labels[-1]
    for sweep in sweeps:
        out.append(
            Headline(
                measure=f"intake + {sweep.name}, signed {large}: capacity vs {RAW}, MB/s",
                ours=_fig(sweep.mbps(large, OURS)),
                baseline=_fig(sweep.mbps(large, RAW)),
                ratio=spread(sweep.ratios(large, RAW), "{:.2f}"),
            )
        )
    return out


def _capacity(sweep: Sweep, label: str, system: str) -> float:
    return statistics.median(sweep.capacity(label, system))


def _p50(sweep: Sweep, label: str, system: str) -> float:
    return statistics.median(r.p50_ms for r in sweep.cells[label, system].paced)


def _plots(sweeps: list[Sweep], folder: Path) -> list[str]:
    sizes = sweeps[0].plan.sizes
    ticks = [(float(size), label) for label, size in sizes.items()]
    drawn = []
    for file, title, ylabel, figure in (
        ("sizes-throughput.png", "Capacity by package size", "packages/s (log)", _capacity),
        ("sizes-latency.png", "p50 latency at 25 % of lienthong's capacity", "ms (log)", _p50),
    ):
        series, styles = {}, {}
        for sweep, dashes in zip(sweeps, ("solid", "dashed", "dotted"), strict=False):
            for system, colour in zip(SYSTEMS, ("C0", "C1", "C2"), strict=True):
                name = f"{system}, {sweep.name}"
                series[name] = [(sweep.bytes[s], figure(sweep, s, system)) for s in sizes]
                styles[name] = {"color": colour, "linestyle": dashes}
        lines(
            folder / file,
            title=title,
            xlabel="package size, bytes (log; the points at the sizes sent)",
            ylabel=ylabel,
            series=series,
            logx=True,
            logy=True,
            xticks=ticks,
            styles=styles,
        )
        drawn.append(f"bench/{file}")
    return drawn


def report(sweeps: list[Sweep], repeats: int, plots: Path | None) -> Section:
    body = _method(sweeps, repeats)
    for sweep in sweeps:
        body += _chain(sweep)
    return Section(
        scenario="sizes",
        title="Package sizes, one hop and the 4-hop route (issue 10)",
        body="\n".join(body) + "\n",
        headlines=headlines(sweeps),
        plots=_plots(sweeps, plots) if plots is not None else [],
    )
