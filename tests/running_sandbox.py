"""``lienthong sandbox`` running in the background for a test or a benchmark, and the peak
memory of its node processes (their VmHWM, read from /proc)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

READY = "The tree runs until Ctrl-C"


@contextlib.asynccontextmanager
async def running_sandbox(
    folder: Path, suffix: str, extra: Sequence[str] = ()
) -> AsyncIterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """The sandbox process, once its tree is up, and its http.json (URLs and tokens)."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "adapters.cli", "sandbox", "--dir", str(folder)),
            f"--suffix={suffix}",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        async with asyncio.timeout(180):
            while READY not in (line := await asyncio.to_thread(process.stdout.readline)):
                seen.append(line)
                assert process.poll() is None, "the sandbox stopped:\n" + "".join(seen)
        faces = json.loads((folder / "http.json").read_text(encoding="utf-8"))
        yield process, faces
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 60)
        if process.stdout is not None:
            process.stdout.close()


def node_peaks_mib(root: int) -> dict[int, float]:
    """VmHWM, in MiB, of each ``lienthong serve`` process below ``root``."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = {}, [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                if b"serve" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                    continue
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    found[pid] = int(line.split()[1]) / 1024
    return found
