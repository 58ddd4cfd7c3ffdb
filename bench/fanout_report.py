"""The fan-out scenario's measurements and their report (bench/fanout.py takes them)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bench.observe import LinkCopy
from bench.timing import spread


@dataclass(frozen=True)
class Outcome:
    recipients: int
    size: int  # package bytes
    delivered: int
    seconds: float | None  # submission to the last mailbox row; None if not all arrived
    cpu_s: float
    per_level: dict[str, tuple[int, int]]  # level -> (delivered, expected)
    links: list[LinkCopy]
    lost_connections: list[str]  # the nodes' broker connections lost meanwhile, why


@dataclass(frozen=True)
class Startup:
    files_s: float
    directory_s: float
    ready_s: float
    rss_ready: list[float]
    rss_after: list[float]


def report(
    tree: str, deadline_s: float, results: dict[tuple[str, int], list[Outcome]], startup: Startup
) -> None:
    systems = sorted({name for name, _ in results}, key=lambda name: name != "lienthong")
    sizes = sorted({n for _, n in results})
    print(f"\n### Fan-out: one package to {max(sizes):,} agencies\n")
    print(
        f"Trees: {tree}; each system runs the same nodes, packed alike. Packages from "
        "000.00.00.G01 on the central node, each system in turn (order alternating), "
        f"watched for at most {deadline_s:.0f} s each.\n"
    )
    for size in sizes:
        runs = {name: results.get((name, size), []) for name in systems}
        package = next(o.size for outcomes in runs.values() for o in outcomes)
        print(
            f"To {size:,} agencies ({package:,}-byte package: a To entry each, 10 KiB attached):\n"
        )
        print(f"| measure | {' | '.join(systems)} |")
        print(f"|---|{'---|' * len(systems)}")
        for label, cell in _ROWS:
            print(f"| {label} | {' | '.join(cell(runs[n], deadline_s) for n in systems)} |")
        print()
    print(
        f"lienthong's tree: its files (PKI, directory, node files) written in "
        f"{startup.files_s:.1f} s; the directory read once in {startup.directory_s:.2f} s; "
        f"from start to every node consuming its queues and links {startup.ready_s:.1f} s; "
        "resident memory per process when ready / at the end: "
        + ", ".join(
            f"{a:.0f}/{b:.0f}" for a, b in zip(startup.rss_ready, startup.rss_after, strict=True)
        )
        + " MiB."
    )
    for (name, size), outcomes in results.items():
        lost = [e for o in outcomes for e in o.lost_connections]
        if lost:
            print(
                f"\n{name}, to {size:,}: {len(lost)} broker connection(s) lost; first: `{lost[0]}`"
            )
    for name in systems:
        final = results.get((name, max(sizes)), [])
        done = [o.seconds for o in final if o.seconds is not None]
        verdict = "met" if final and len(done) == len(final) and max(done) <= 60 else "NOT met"
        print(f"\nGoal, {name}: every one of {max(sizes):,} mailboxes within 60 s: {verdict}.")


def _time(runs: list[Outcome], deadline_s: float) -> str:
    done = [o.seconds for o in runs if o.seconds is not None]
    if not runs:
        return "not run"
    text = f"**{spread(done, '{:.2f}')} s**" if done else f"**not all within {deadline_s:.0f} s**"
    return text if len(done) == len(runs) else f"{text} ({len(runs) - len(done)} incomplete)"


def _delivered(runs: list[Outcome], _: float) -> str:
    if not runs:
        return "–"
    least = min(runs, key=lambda o: o.delivered)
    levels = ", ".join(f"{lv} {got:,}/{want:,}" for lv, (got, want) in least.per_level.items())
    return f"{least.delivered:,} of {least.recipients:,} ({levels})"


def _copies(runs: list[Outcome], _: float) -> str:
    if not runs:
        return "–"
    o = runs[-1]
    most = max(Counter((c.source, c.target) for c in o.links).values(), default=0)
    return f"{len(o.links)} / {sum(c.published for c in o.links)} / {most}"


def _bytes_per_copy(runs: list[Outcome], _: float) -> str:
    if not runs:
        return "–"
    o = runs[-1]
    return f"{o.size:,} + {max((c.envelope_bytes for c in o.links), default=0):,}"


def _carried(runs: list[Outcome], _: float) -> str:
    if not runs:
        return "–"
    totals = [sum(c.carried for c in o.links if c.published) / 2**20 for o in runs]
    return f"{spread(totals, '{:.1f}')} MiB"


_ROWS = (
    ("submission to the last mailbox row", _time),
    ("runs", lambda runs, _: str(len(runs))),
    ("mailbox rows written (the run with fewest)", _delivered),
    (
        "CPU of the node processes, submission to last row or deadline",
        lambda runs, _: f"{spread([o.cpu_s for o in runs], '{:.1f}')} s" if runs else "–",
    ),
    ("link copies: outbox rows / arrived / most on one link", _copies),
    ("bytes per copy: package + envelope (largest)", _bytes_per_copy),
    ("bytes carried over all links, per run", _carried),
    (
        "broker connections the nodes lost",
        lambda runs, _: str(sum(len(o.lost_connections) for o in runs)) if runs else "–",
    ),
)
