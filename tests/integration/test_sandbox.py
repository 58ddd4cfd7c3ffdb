"""The README's run command: the sandbox tree up, and a document across it."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from adapters.sandbox_tree import load_topology, topology_file
from exchange.links import LANES, down_queue, up_queue
from tests.integration.broker import delete_queues

pytestmark = pytest.mark.integration


async def test_the_sandbox_carries_a_document_from_a_commune_to_another_provinces_commune(
    tmp_path: Path,
) -> None:
    suffix = f"-{uuid.uuid4().hex[:6]}"
    topology = load_topology(topology_file(), suffix)
    assert len(topology.processes()) <= 4
    try:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "adapters.cli", "sandbox", "--once"),
                *("--dir", str(tmp_path), f"--suffix={suffix}"),
            ],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert "17 of 17 signed by their senders and admitted" in out
        assert "answered: accepted" in out
        assert "fetched by 000.21.05.H41" in out
        assert "byte-identical" in out
        hops = out.split("route, from the signed hop records:")[1].strip().splitlines()[:5]
        route = [line.split()[-1] for line in hops]
        assert route == [
            f"{node}{suffix}"
            for node in (
                "commune-22-31-h53",
                "district-31-h53",
                "province-h53",
                "central",
                "province-h41",
            )
        ]
        assert len(list((tmp_path / "logs").glob("process-*.log"))) == len(topology.processes())
    finally:
        names = []
        for node in topology.nodes:
            names += [f"lienthong.{node.id}.{s}" for s in ("inbound", "requests", "dead")]
            names += [up_queue(node.id, lane) for lane in LANES]
            if node.parent:
                names += [down_queue(node.parent, node.id, lane) for lane in LANES]
        await delete_queues(names)
