"""Large packages over the 4-hop route, beside curl copying the same bytes, in one run.

- **lienthong**: the sandbox tree (``lienthong sandbox``, its five nodes in four processes
  plus the national axis's). A signed package, generated on the fly, is POSTed to the
  commune's node and crosses commune -> district -> province -> central -> another
  province's node (three pushes and a pull, each a claim check), admitted by streaming
  verification at the commune; timed from the first byte of the POST to the package in
  the recipient's mailbox.
- **curl**: the same bytes copied hop by hop over loopback: ``curl`` downloads the file
  from a static HTTP server, writing it to a new file, four times in a row (each hop
  reading the copy the one before wrote); timed from the first to the fourth.

Sizes alternate lienthong and curl, round by round. The report gives each time and MB/s,
their ratio, and the peak RSS (VmHWM) of every lienthong process over the whole run.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.sandbox import _agency_key
from adapters.sandbox_tree import free_port, load_topology, topology_file
from bench.report import Headline, Section
from bench.timing import spread
from tests.large_packages import write_signed_package
from tests.running_sandbox import node_peaks_mib

MiB = 1024 * 1024
SIZES = (10, 100, 500)
HOPS = 4


async def _lienthong(
    suffix: str, faces: dict[str, dict[str, Any]], package: Path, number: int
) -> float:
    topology = load_topology(topology_file(), suffix)
    sender, recipient = topology.demo_sender, topology.demo_recipient
    entry, home = topology.node_of(sender), topology.node_of(recipient)
    mine = {"Authorization": f"Bearer {faces[home]['tokens'][recipient]}"}
    timeout = aiohttp.ClientTimeout(total=3600)
    size = await asyncio.to_thread(os.path.getsize, package)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        began = time.perf_counter()
        with package.open("rb") as body:
            async with http.post(
                f"{faces[entry]['url']}/v1/packages",
                data=body,
                headers={
                    "Authorization": f"Bearer {faces[entry]['tokens'][sender]}",
                    "Content-Length": str(size),
                },
            ) as sent:
                answer = await sent.json()
        if sent.status != 201:
            raise RuntimeError(f"package {number} refused: {answer}")
        mailbox = f"{faces[home]['url']}/v1/agencies/{recipient}/mailbox"
        while True:
            query = {"wait": "5", "limit": "1000"}
            async with http.get(mailbox, params=query, headers=mine) as page:
                found = await page.json()
            if page.status != 200:
                raise RuntimeError(f"the recipient's mailbox answered {page.status}: {found}")
            if any(i["message_id"] == answer["message_id"] for i in found["items"]):
                elapsed = time.perf_counter() - began
                ack = f"{mailbox.rsplit('/', 1)[0]}/packages/{answer['message_id']}/ack"
                async with http.post(ack, headers=mine):  # an empty mailbox for the next one
                    return elapsed
            await asyncio.sleep(0.1)


async def _curl(source: Path, folder: Path) -> float:
    app = web.Application()
    app.router.add_static("/", folder)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        (folder / "hop0").unlink(missing_ok=True)
        os.link(source, folder / "hop0")
        began = time.perf_counter()
        for hop in range(1, HOPS + 1):
            process = await asyncio.create_subprocess_exec(
                "curl", "-sf", "-o", str(folder / f"hop{hop}"),
                f"http://127.0.0.1:{port}/hop{hop - 1}",
            )  # fmt: skip
            if await process.wait() != 0:
                raise RuntimeError(f"curl failed on hop {hop}")
        elapsed = time.perf_counter() - began
    finally:
        await runner.cleanup()
        for hop in range(HOPS + 1):
            (folder / f"hop{hop}").unlink(missing_ok=True)
    return elapsed


def run(*, rounds: int, quick: bool, repeats: int = 3) -> Section:
    del repeats
    sizes = (1, 4) if quick else SIZES
    rounds = 1 if quick else min(rounds, 3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        suffix = f"-{uuid.uuid4().hex[:6]}"
        tree_dir = root / suffix
        sandbox = subprocess.Popen(
            [
                *(sys.executable, "-m", "adapters.cli", "sandbox"),
                *("--dir", str(tree_dir), f"--suffix={suffix}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            assert sandbox.stdout is not None
            while "The tree runs until Ctrl-C" not in sandbox.stdout.readline():
                if sandbox.poll() is not None:
                    raise RuntimeError("the sandbox stopped")
            faces = json.loads((tree_dir / "http.json").read_text(encoding="utf-8"))
            topology = load_topology(topology_file(), suffix)
            key = _agency_key(tree_dir / "pki", topology.demo_sender)
            copies = root / "copies"
            copies.mkdir()
            results: dict[int, tuple[list[float], list[float]]] = {}
            number = 8000
            for size in sizes:
                ours, theirs = results.setdefault(size, ([], []))
                for index in range(rounds):
                    number += 1
                    package = root / f"p{number}.edxml"
                    write_signed_package(
                        package, size * MiB, key, sender=topology.demo_sender,
                        recipient=topology.demo_recipient, number=number,
                    )  # fmt: skip
                    order = ("lienthong", "curl") if index % 2 == 0 else ("curl", "lienthong")
                    for system in order:
                        if system == "lienthong":
                            ours.append(asyncio.run(_lienthong(suffix, faces, package, number)))
                        else:
                            theirs.append(asyncio.run(_curl(package, copies)))
                    package.unlink()
                results[size] = (ours, theirs)
            peaks = sorted(node_peaks_mib(sandbox.pid).values())
        finally:
            sandbox.send_signal(signal.SIGTERM)
            sandbox.wait(timeout=60)
            if sandbox.stdout is not None:
                sandbox.stdout.close()
    _report(results, peaks, rounds)
    largest = max(results)
    ours, theirs = results[largest]
    return Section(
        "large",
        "Large packages over the 4-hop route (issue 9)",
        "",
        [
            Headline(
                f"{largest} MiB over the 4-hop route, s (baseline: curl, four copies in a row)",
                spread(ours, "{:.2f}"),
                spread(theirs, "{:.2f}"),
                spread([a / b for a, b in zip(ours, theirs, strict=True)], "{:.1f}"),
            )
        ],
    )


def _report(
    results: dict[int, tuple[list[float], list[float]]], peaks: list[float], rounds: int
) -> None:
    print("\n### Large packages: commune → district → province → central → province\n")
    print(f"{rounds} round(s) per size, lienthong and curl alternating\n")
    print(
        "| package | lienthong s | lienthong MB/s | curl 4 hops s | curl MB/s | ratio |\n"
        "|---|---|---|---|---|---|"
    )
    for size, (ours, theirs) in results.items():
        mb = size * MiB / 1e6
        print(
            f"| {size} MiB | {spread(ours, '{:.2f}')} | {mb / statistics.median(ours):.0f} "
            f"| {spread(theirs, '{:.2f}')} | {mb / statistics.median(theirs):.0f} "
            f"| {statistics.median(ours) / statistics.median(theirs):.1f} |"
        )
    print(
        f"\nPeak RSS (VmHWM) of each lienthong process over the whole run, MiB: "
        f"{', '.join(f'{p:.0f}' for p in peaks)}"
    )
