"""Admission across cores: the pool with one worker and two, beside in-process admission
and a plain process pool of the baseline (METHOD says how)."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from adapters.admission_pool import AdmissionPool
from adapters.config_files import load_node_config, load_trust
from bench.admission import baseline, make_package
from bench.intake import SENDER, _node_config
from bench.timing import spread
from bench.tree import cpu_seconds
from exchange.admission import Admission, admit
from exchange.directory import SubjectBinding
from exchange.policy import STRICT
from exchange.signing import SigningKey

IN_FLIGHT = 16

METHOD = """### Admission across cores

The node's process pool with one worker and with two, beside
the same work called in-process and beside a hand-written pool of the baseline.

- **in-process**: `exchange.admission.admit` called in a loop, one core, no pool: what
  the pool costs is measured against it (the bytes and the verdict cross a pipe, pickled).
- **lienthong pool, 1 and 2 workers**: `adapters.admission_pool.AdmissionPool`, as the
  node uses it: each worker built its context from the node file at start; 16 admissions
  in flight (the node's `intake_concurrency`) from one asyncio loop.
- **baseline pool, 1 and 2 workers**: bench/admission.py's baseline in a plain
  `ProcessPoolExecutor`, 16 in flight, the same way.

Each round runs every configuration once, in an order rotated per round; throughput is
packages per second over the round's packages; CPU is user + system time of the
benchmark's process and the workers, from /proc.
- **targets**: two workers at least 1.6× as fast as one.
"""


async def _through(
    admit_one: Callable[[bytes], Awaitable[object]], packages: list[bytes]
) -> tuple[float, float]:
    """Packages per second with ``IN_FLIGHT`` admissions under way at once, and the CPU
    milliseconds per package of this process and its workers (idle ones add nothing)."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(data: bytes) -> None:
        async with gate:
            await admit_one(data)

    every = [os.getpid()]
    cpu, start = cpu_seconds(every), time.perf_counter()
    await asyncio.gather(*(one(d) for d in packages))
    elapsed, used = time.perf_counter() - start, cpu_seconds(every) - cpu
    return len(packages) / elapsed, used / len(packages) * 1e3


def measure(folder: Path, rounds: int, count: int) -> dict[str, tuple[list[float], list[float]]]:
    config_file = _node_config(folder, "benchadm")
    pki = folder / "pki"
    key = SigningKey.from_pem(
        (pki / "agencies" / f"{SENDER}.key").read_bytes(),
        (pki / "agencies" / f"{SENDER}.pem").read_bytes(),
    )
    packages = [make_package(10 * 1024, key) for _ in range(8)] * (count // 8)
    trust = load_trust(load_node_config(config_file))
    ctx = Admission(trust=trust, binder=SubjectBinding())
    ca_file = str(pki / "ca.pem")
    spawn = multiprocessing.get_context("spawn")
    pools = {n: AdmissionPool(config_file, n) for n in (1, 2)}
    plain = {n: ProcessPoolExecutor(n, mp_context=spawn) for n in (1, 2)}

    async def in_process(data: bytes) -> object:
        return admit(data, STRICT, ctx)

    def pooled(n: int) -> Callable[[bytes], Awaitable[object]]:
        return lambda data: pools[n](data, STRICT)

    def plain_pooled(n: int) -> Callable[[bytes], Awaitable[object]]:
        loop = asyncio.get_running_loop()
        return lambda data: loop.run_in_executor(plain[n], baseline, data, ca_file)

    async def rounds_of() -> dict[str, tuple[list[float], list[float]]]:
        for n in (1, 2):  # start every worker and let it build its context
            await asyncio.gather(*(pools[n](packages[0], STRICT) for _ in range(n * 4)))
            await _through(plain_pooled(n), packages[: n * 8])
        systems: dict[str, Callable[[bytes], Awaitable[object]]] = {
            "in-process": in_process,
            "lienthong pool, 1 worker": pooled(1),
            "lienthong pool, 2 workers": pooled(2),
            "baseline pool, 1 worker": plain_pooled(1),
            "baseline pool, 2 workers": plain_pooled(2),
        }
        names = list(systems)
        out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in names}
        for index in range(rounds):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                rate, cpu = await _through(systems[name], packages)
                out[name][0].append(rate)
                out[name][1].append(cpu)
        return out

    async def measured() -> dict[str, tuple[list[float], list[float]]]:
        try:
            return await rounds_of()
        finally:
            for pool in pools.values():
                await pool.aclose()

    try:
        return asyncio.run(measured())
    finally:
        for executor in plain.values():
            executor.shutdown(cancel_futures=True)


def table(
    measured: dict[str, tuple[list[float], list[float]]], count: int, rounds: int
) -> tuple[str, dict[str, list[float]]]:
    """The markdown table, and the per-round ratios the headlines quote."""
    results = {name: rates for name, (rates, _) in measured.items()}
    cpu = {name: used for name, (_, used) in measured.items()}
    ratios = {
        "two workers / one (lienthong)": _per_round(
            results["lienthong pool, 2 workers"], results["lienthong pool, 1 worker"]
        ),
        "two workers / one (baseline)": _per_round(
            results["baseline pool, 2 workers"], results["baseline pool, 1 worker"]
        ),
        "pool of 1 / in-process (the pool's cost)": _per_round(
            results["lienthong pool, 1 worker"], results["in-process"]
        ),
        "lienthong / baseline, 2 workers": _per_round(
            results["lienthong pool, 2 workers"], results["baseline pool, 2 workers"]
        ),
    }
    overhead = [
        pool - alone
        for pool, alone in zip(cpu["lienthong pool, 1 worker"], cpu["in-process"], strict=True)
    ]
    lines = [
        f"\n### Admission across cores: {count} signed 10 KiB packages per round, "
        f"{IN_FLIGHT} in flight, {rounds} rounds\n",
        "| configuration | packages/s | CPU ms per package, all its processes |",
        "|---|---|---|",
    ]
    for name, values in results.items():
        lines.append(f"| {name} | {spread(values)} | {spread(cpu[name], '{:.2f}')} |")
    lines += ["", "| ratio, round by round | median (min–max) |", "|---|---|"]
    lines += [f"| {name} | {spread(values, '{:.2f}')} |" for name, values in ratios.items()]
    lines += [
        "",
        "The pool's cost, CPU per package of the pool of 1 (node process and worker) less "
        f"in-process admission: {spread(overhead, '{:.2f}')} ms.",
    ]
    return "\n".join(lines), ratios


def _per_round(ours: list[float], base: list[float]) -> list[float]:
    return [a / b for a, b in zip(ours, base, strict=True)]
