"""The route scenario's report: markdown tables of capacity, paced latency, the legs of
lienthong's route and CPU per process (bench/route.py measures them)."""

from __future__ import annotations

from bench.arrivals import Run
from bench.timing import spread


def report(
    capacity: dict[str, list[float]],
    paced: dict[str, list[Run]],
    rate: float,
    count: int,
    burst: int,
    calibration: Run,
    legs: list[tuple[str, float]],
    roles: dict[str, str],
) -> None:
    ours, base = capacity
    print()
    print(
        f"Capacity: {burst} packages published at once, to the last row seen; "
        f"{len(capacity[ours])} repeat(s), the systems in turn.\n"
    )
    print(f"| system | packages/s | {ours} / {base}, per repeat |")
    print("|---|---|---|")
    for name, values in capacity.items():
        ratios = [a / b for a, b in zip(capacity[ours], values, strict=True)]
        print(f"| {name} | {spread(values)} | {spread(ratios, '{:.2f}')} |")
    print(
        f"\nPaced: {rate:.0f} packages/s (25 % of lienthong's calibrated "
        f"{calibration.throughput:.0f}/s), {count} packages per run; latency from publish "
        "to the row seen:\n"
    )
    print("| system | achieved packages/s | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for name, runs in paced.items():
        print(
            f"| {name} | {spread([r.throughput for r in runs])} "
            f"| {spread([r.p50_ms for r in runs], '{:.1f}')} "
            f"| {spread([r.p99_ms for r in runs], '{:.1f}')} |"
        )
    added50 = [a.p50_ms - b.p50_ms for a, b in zip(paced[ours], paced[base], strict=True)]
    added99 = [a.p99_ms - b.p99_ms for a, b in zip(paced[ours], paced[base], strict=True)]
    print(
        f"| **{ours} − {base}, per repeat** | | **{spread(added50, '{:.1f}')}** "
        f"| {spread(added99, '{:.1f}')} |"
    )
    verdict = "met" if max(added50) < 30 else "NOT met" if min(added50) >= 30 else "met in some"
    print(f"\nTarget, lienthong adds under 30 ms p50: {verdict}.")
    print("\nWhere lienthong's time goes (median over the paced packages, from the hop records):\n")
    print("| leg | ms |")
    print("|---|---|")
    for name, ms in legs:
        for node_id, level in roles.items():
            name = name.replace(node_id, level)
        print(f"| {name} | {ms:.1f} |")


def report_cpu(cpu: dict[tuple[str, str], list[float]]) -> None:
    print(
        "\nCPU per package in the capacity runs, by process (user + system, from /proc; the "
        "commune's admission workers counted with it; RabbitMQ and the load generator not):\n"
    )
    print("| system | process | CPU ms per package |")
    print("|---|---|---|")
    totals: dict[str, list[float]] = {}
    for (system, label), values in cpu.items():
        print(f"| {system} | {label} | {spread(values, '{:.2f}')} |")
        totals.setdefault(system, [0.0] * len(values))
        totals[system] = [a + b for a, b in zip(totals[system], values, strict=True)]
    for system, values in totals.items():
        print(f"| {system} | **all** | **{spread(values, '{:.2f}')}** |")
