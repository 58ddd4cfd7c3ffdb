"""The sustained scenario's figures: its runs cut into windows and minutes, the tables,
the plots and the headlines (the load itself is in bench/sustained.py)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.plots import lines
from bench.report import Headline, Section

if TYPE_CHECKING:
    from bench.sustained import Sample, Trace

MIB = 1024 * 1024
NAMES = {"lienthong": "lienthong", "naive": "naive forwarder"}
KEPT_UP_S = 0.5  # a publish later than this behind its schedule: the generator fell behind


@dataclass(frozen=True)
class Signing:
    count: int
    per_package_s: float  # in one process
    elapsed_s: float  # all of them, in ``processes``
    processes: int


@dataclass(frozen=True)
class Span:
    """A window (or a minute) of one run: what was sent in it, what it held at its end."""

    start: float
    end: float
    published: int
    answered: int
    answer_ms: list[float]  # of the packages published in the span
    row_ms: list[float]  # to the mailbox row (lienthong), same packages
    rss: dict[str, int]  # per process: at the span's end (a window) or its peak (a minute)
    store: int  # bytes, at the span's end
    cpu: tuple[float, ...]  # cores used: the system, the load generator, RabbitMQ, the rest
    process_cpu: dict[str, float]  # cores used by each of the system's processes

    @property
    def total(self) -> int:
        return sum(self.rss.values())


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def windows(trace: Trace) -> list[Span]:
    pairs = zip(trace.samples, trace.samples[1:], strict=False)
    return [_span(trace, before, after, after.rss) for before, after in pairs]


def _span(trace: Trace, first: Sample, last: Sample, rss: dict[str, int]) -> Span:
    start, end = first.at, last.at
    inside = [i for i, t in enumerate(trace.sent) if start <= t < end]
    seconds = end - start
    used = {k: (v - first.cpu.get(k, 0.0)) / seconds for k, v in last.cpu.items()}
    system = sum(used.values())
    generator = (last.generator - first.generator) / seconds
    broker = (last.broker - first.broker) / seconds
    rest = max(0.0, (last.busy - first.busy) / seconds - system - generator - broker)
    return Span(
        start=start,
        end=end,
        published=len(inside),
        answered=sum(1 for t in trace.answered if start <= t < end),
        answer_ms=[(trace.answered[i] - trace.sent[i]) * 1000 for i in inside],
        row_ms=[(trace.arrived[i] - trace.sent[i]) * 1000 for i in inside]
        if trace.arrived is not None
        else [],
        rss=rss,
        store=sum(last.store.values()),
        cpu=(system, generator, broker, rest),
        process_cpu=used,
    )


def minutes(trace: Trace) -> list[Span]:
    """Each minute of the run (the last may be shorter); memory is the minute's peak."""
    out = []
    for minute in range(math.ceil(trace.seconds / 60)):
        inside = [
            (before, after)
            for before, after in zip(trace.samples, trace.samples[1:], strict=False)
            if minute * 60 <= before.at < (minute + 1) * 60
        ]
        if inside:
            peak = max((after for _, after in inside), key=lambda x: sum(x.rss.values()))
            out.append(_span(trace, inside[0][0], inside[-1][1], peak.rss))
    return out


def _mib(value: int) -> str:
    return f"{value / MIB:.1f}"


def _ms(values: list[float], q: float) -> str:
    return "–" if not values else f"{_pct(values, q):.1f}"


def _processes(span: Span) -> str:
    return " + ".join(
        f"{name} {_mib(value)} ({span.process_cpu.get(name, 0.0):.2f})"
        for name, value in span.rss.items()
    )


def _late(trace: Trace) -> str:
    worst = max(trace.late)
    verdict = "kept up" if worst < KEPT_UP_S else f"**fell behind** by up to {worst:.1f} s"
    first, last = trace.samples[0], trace.samples[-1]
    cpu = (last.generator - first.generator) / (last.at - first.at)
    return (
        f"{verdict} (late p99 {_pct(trace.late, 0.99) * 1000:.1f} ms, max {worst * 1000:.0f} ms; "
        f"{cpu:.0%} of a core)"
    )


def _rates(trace: Trace) -> tuple[float, float]:
    """Published and answered packages per second over the whole run."""
    count = len(trace.sent)
    return count / max(trace.seconds, max(trace.sent)), count / max(trace.answered)


def _ratio(values: list[float], first: float) -> float:
    return max(values) / first if first else math.nan


def headlines(traces: dict[str, Trace]) -> list[Headline]:
    by = {name: minutes(trace) for name, trace in traces.items()}
    memory = {n: (m[0].total, m[-1].total) for n, m in by.items()}
    p99 = {n: [_pct(s.answer_ms, 0.99) for s in m] for n, m in by.items()}

    def memory_cell(name: str) -> str:
        first, last = memory[name]
        return f"{last / first:.2f} ({_mib(first)} → {_mib(last)} MiB)"

    def p99_cell(name: str) -> str:
        values = p99[name]
        return f"{_ratio(values, values[0]):.2f} ({values[0]:.1f} → worst {max(values):.1f} ms)"

    ours_memory = memory["lienthong"][1] / memory["lienthong"][0]
    ours_p99 = _ratio(p99["lienthong"], p99["lienthong"][0])
    return [
        Headline(
            "sustained, memory: last minute / first minute",
            memory_cell("lienthong"),
            memory_cell("naive"),
            f"{ours_memory:.2f}",
            "≤ 1.10×",
            ours_memory <= 1.10,
        ),
        Headline(
            "sustained, p99: worst minute / first minute",
            p99_cell("lienthong"),
            p99_cell("naive"),
            f"{ours_p99:.2f}",
            "≤ 2×",
            ours_p99 <= 2.0,
        ),
    ]


def _method(traces: dict[str, Trace], signing: Signing, share: float) -> str:
    ours = traces["lienthong"]
    return f"""### Sustained load: signed 10 KiB documents at {share:.0%} of the peak

One node, as in the intake scenario: `lienthong serve` with a SQLite store and the node's
default limits (one admission worker process on 2 cores) takes signed 10 KiB documents
(RSA-2048, each its own DocumentId, each to two agencies on the node) on its inbound queue:
fast dedup, admission in the worker, blob and row committed (fsynced), ack, answer; its relay
then writes the mailbox rows. The baseline is the naive forwarder (`bench/servers.py naive`):
the admission baseline (hardened parse, structural XSD, attachments, signxml verify), an
fsynced SQLite insert, ack, answer, in one process.

Lienthong's peak was calibrated first, after a warm-up: a burst of documents published at
once, timed to the last mailbox row ({ours.peak:.0f} packages/s); both systems were then
offered {ours.rate:.0f} packages/s ({share:.0%} of it), paced, for {ours.seconds / 60:.1f}
minutes each. The systems ran one after the other (lienthong first, then the baseline, warmed
and given the same burst): two sustained loads at once would overload the 2 cores, so the
baseline is also the measure of the machine's drift. The {signing.count} packages were
signed before the load, in {signing.processes} processes ({signing.elapsed_s:.0f} s; a
signature costs {signing.per_package_s * 1000:.2f} ms of one core, which would otherwise be
taken from the system measured), and both systems took the same ones (the baseline keeps no
dedup index). Every {ours.window:.0f} s the load generator read, from /proc, the resident
memory (VmRSS) and CPU time of every process of the system under load, the CPU time of the
whole machine, and the size of the system's store files (lienthong: database, WAL and blob
folder). Latency runs from the publish to the answer and, for lienthong, to the time the
node stamped on the recipient's mailbox row (taken just before the relay's transaction;
read from the store after the load, as polling it during the load cost the generator a
seventh of a core). Latency of a window or minute is that of the packages published in
it; its memory is the peak of the readings at its windows' ends; its CPU is in cores
(1.00 = one core busy): the system's processes, the load generator, RabbitMQ (which other
users of the broker share), and the rest of the machine (other tenants: it is shared).
Every answer was `accepted`.

The baseline's memory grows with every package, and that is its library's doing: signxml
5.2, verifying with `ca_pem_file`, builds a certificate chain verifier per call whose
cryptography `ExtensionPolicy` holds a callback bound to the verifier itself; tracemalloc
showed both still held after `gc.collect()`, about 1.7 KiB of Python objects per package.
Lienthong chains the certificate itself and gives signxml only the leaf (`x509_cert`), so it
does not take that path."""


def report(
    traces: dict[str, Trace],
    signing: Signing,
    share: float,
    plots: Path | None,
) -> Section:
    parts = [_method(traces, signing, share), ""]
    parts += [
        "| system | burst, packages/s | offered | published/s | answered/s | "
        "p50 ms | p99 ms | load generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, trace in traces.items():
        published, answered = _rates(trace)
        latency = [(a - s) * 1000 for a, s in zip(trace.answered, trace.sent, strict=True)]
        parts.append(
            f"| {NAMES[name]} | {trace.peak:.0f} | {trace.rate:.0f} | {published:.0f} "
            f"| {answered:.0f} | {_ms(latency, 0.5)} | {_ms(latency, 0.99)} | {_late(trace)} |"
        )
    parts += ["", "Per minute (latency to the answer; memory, the minute's peak):", ""]
    by = {name: minutes(trace) for name, trace in traces.items()}
    parts += _spans_table("minute", by, lambda index, _: str(index + 1))
    parts += ["", "<details><summary>Every window</summary>", ""]
    by_window = {name: windows(trace) for name, trace in traces.items()}
    parts += _spans_table("window, s", by_window, lambda _, s: f"{s.start:.0f}–{s.end:.0f}")
    parts += ["", "</details>"]
    drawn = _plots(traces, plots) if plots is not None else []
    return Section(
        scenario="sustained",
        title="Sustained load (issue 10)",
        body="\n".join(parts),
        headlines=headlines(traces),
        plots=drawn,
    )


def _row(label: str, system: str, span: Span) -> str:
    rows = f"{_ms(span.row_ms, 0.5)} / {_ms(span.row_ms, 0.99)}" if span.row_ms else "–"
    return (
        f"| {label} | {system} | {span.answered / (span.end - span.start):.0f} "
        f"| {_ms(span.answer_ms, 0.5)} | {_ms(span.answer_ms, 0.99)} | {rows} "
        f"| {_mib(span.total)} | {_processes(span)} | {_mib(span.store)} "
        f"| {' / '.join(f'{c:.2f}' for c in span.cpu)} |"
    )


def _plots(traces: dict[str, Trace], folder: Path) -> list[str]:
    memory: dict[str, list[tuple[float, float]]] = {}
    latency: dict[str, list[tuple[float, float]]] = {}
    for name, trace in traces.items():
        label = NAMES[name]
        memory[f"{label}, all processes"] = [
            (s.at / 60, sum(s.rss.values()) / MIB) for s in trace.samples
        ]
        if name == "lienthong":
            for process in trace.samples[0].rss:
                memory[f"{label}, {process}"] = [
                    (s.at / 60, s.rss.get(process, 0) / MIB) for s in trace.samples
                ]
        spans = windows(trace)
        for q, tag in ((0.5, "p50"), (0.99, "p99")):
            latency[f"{label}, {tag}"] = [
                ((s.start + s.end) / 120, _pct(s.answer_ms, q)) for s in spans if s.answer_ms
            ]
    lines(
        folder / "sustained-memory.png",
        title="Resident memory under a sustained load",
        xlabel="minutes",
        ylabel="RSS, MiB",
        series=memory,
    )
    lines(
        folder / "sustained-latency.png",
        title="Latency, publish to answer, per window",
        xlabel="minutes",
        ylabel="ms",
        series=latency,
        logy=True,
    )
    return ["bench/sustained-memory.png", "bench/sustained-latency.png"]


def _spans_table(
    first: str, by: dict[str, list[Span]], label: Callable[[int, Span], str]
) -> list[str]:
    """One row per span and system, the systems interleaved span by span."""
    rows = [
        f"| {first} | system | answered/s | p50 ms | p99 ms | to mailbox row p50 / p99 ms "
        "| RSS MiB, all processes | per process: MiB (cores) | store MiB "
        "| CPU, cores: system / generator / broker / rest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for index in range(max(len(spans) for spans in by.values())):
        for name, spans in by.items():
            if index < len(spans):
                rows.append(_row(label(index, spans[index]), NAMES[name], spans[index]))
    return rows
