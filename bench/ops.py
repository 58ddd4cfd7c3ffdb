"""What watching a node costs: its intake with and without consoles polling it.

One ``lienthong serve`` node (SQLite store) with its HTTP face. Each round offers a burst
of signed 10 KiB documents twice, in alternating order: once with nobody watching
(**quiet**, the baseline), once while pollers read ``GET /status`` and ``GET /metrics``
every 0.25 s each (**watched**: as many reads as twenty consoles refreshing every 5 s, and a
Prometheus scrape every quarter second). Throughput runs from the first publish to the
last package in its mailbox. The same rounds time each ``/status`` read and, beside it, a
``/healthz`` read (the HTTP round trip alone).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from adapters.sandbox_tree import free_port
from bench.intake import _delete, _MailboxCount, _node_config, _offer, _packages, _ready, _start
from bench.timing import spread

POLL_EVERY_S = 0.25


async def _poll(url: str, token: str, stop: asyncio.Event, status_ms: list[float]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        while not stop.is_set():
            began = time.perf_counter()
            async with http.get(f"{url}/status", headers=headers) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"/status answered {answer.status}")
            status_ms.append((time.perf_counter() - began) * 1000)
            async with http.get(f"{url}/metrics", headers=headers) as answer:
                await answer.read()
            await asyncio.sleep(POLL_EVERY_S)


async def _healthz(url: str, count: int) -> list[float]:
    found = []
    async with aiohttp.ClientSession() as http:
        for _ in range(count):
            began = time.perf_counter()
            async with http.get(f"{url}/healthz") as answer:
                await answer.read()
            found.append((time.perf_counter() - began) * 1000)
    return found


async def _round(
    queue: str, batch: list[bytes], counter: _MailboxCount, url: str, token: str, watched: bool
) -> tuple[float, list[float]]:
    stop, status_ms = asyncio.Event(), []
    poller = asyncio.create_task(_poll(url, token, stop, status_ms)) if watched else None
    counter.start = counter()
    try:
        run = await _offer(queue, batch, None, counter)
    finally:
        stop.set()
        if poller is not None:
            await poller
    return run.throughput, status_ms


def run(*, rounds: int, quick: bool, repeats: int = 3) -> None:
    del repeats
    burst = 60 if quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        node_id = f"bench{uuid.uuid4().hex[:6]}"
        config = _node_config(folder, node_id)
        port, token = free_port(), secrets.token_urlsafe(16)
        digest = hashlib.sha256(token.encode()).hexdigest()
        config.write_text(
            config.read_text()
            + f'\n[http]\nlisten = "127.0.0.1:{port}"\n\n'
            + f'[http.operators.bench]\ntoken_sha256 = "{digest}"\nrole = "viewer"\n'
        )
        url = f"http://127.0.0.1:{port}"
        seed = iter(range(1_000_000))
        process, queue = _start("lienthong", folder, config, node_id)
        try:
            asyncio.run(_ready(queue))
            counter = _MailboxCount(folder / "store" / "lienthong.db")
            asyncio.run(
                _offer(queue, _packages(folder / "pki", burst // 4, "warm-"), None, counter)
            )
            quiet, watched, ratios, status_ms, health_ms = [], [], [], [], []
            for index in range(rounds):
                results = {}
                for looked in (False, True) if index % 2 == 0 else (True, False):
                    batch = _packages(folder / "pki", burst, f"{next(seed)}-")
                    throughput, reads = asyncio.run(
                        _round(queue, batch, counter, url, token, looked)
                    )
                    results[looked] = throughput
                    status_ms += reads
                quiet.append(results[False])
                watched.append(results[True])
                ratios.append(results[True] / results[False])
                health_ms += asyncio.run(_healthz(url, 50))
        finally:
            process.terminate()
            process.wait(timeout=30)
            asyncio.run(_delete(queue))
    _report(quiet, watched, ratios, status_ms, health_ms, burst, rounds)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _report(
    quiet: list[float],
    watched: list[float],
    ratios: list[float],
    status_ms: list[float],
    health_ms: list[float],
    burst: int,
    rounds: int,
) -> None:
    print(f"\n## What watching a node costs (issue 8)\n\n{rounds} rounds of {burst} documents\n")
    print("| intake | packages/s, median (min–max) |\n|---|---|")
    print(f"| quiet (baseline) | {spread(quiet)} |")
    print(f"| watched: /status and /metrics every {POLL_EVERY_S} s | {spread(watched)} |")
    two = "{:.2f}"
    print(f"| watched / quiet, round by round | {spread(ratios, two)} |\n")
    print("| read | p50 ms | p99 ms | reads |\n|---|---|---|---|")
    for name, values in (("/status, under load", status_ms), ("/healthz, idle", health_ms)):
        print(
            f"| {name} | {statistics.median(values):.1f} | {_pct(values, 0.99):.1f} "
            f"| {len(values)} |"
        )
