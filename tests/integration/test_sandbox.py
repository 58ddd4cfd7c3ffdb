"""The README's run command: the sandbox tree up, and a document across it."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from adapters.sandbox import _document as sandbox_document
from adapters.sandbox_bridge import NATIONAL
from adapters.sandbox_tree import Topology, load_topology, topology_file
from exchange.node import queues_of
from tests.integration.broker import delete_queues
from tests.unit.test_sdk_facade import Sdk

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
        # the recipient answers; the sender sees each status, and holds a receipt
        assert f"transport: fetched at node province-h41{suffix}" in out
        steps = [line.strip() for line in out.splitlines() if line.strip().startswith("status 0")]
        assert steps == [
            "status 01 arrived",
            "status 03 accepted",
            "status 04 assigned",
            "status 05 processing",
            "status 06 done",
        ]
        (receipt,) = (tmp_path / "receipts").glob("*.receipt.xml")
        assert "verifies offline, covers the exact bytes sent" in out
        checked = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "verify-receipt",
                "--node-certs",
                str(tmp_path / "pki" / "nodes"),
                str(receipt),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"node province-h41{suffix} delivered message" in checked.stdout
        # and over the REST API: sent, taken with long polling, acknowledged, seen fetched
        assert "201 accepted" in out
        assert "the exact bytes; POST …/ack: acknowledged" in out
        assert f"fetched at node province-h41{suffix}" in out.split("over the REST API")[1]
        # the sender's evidence bundle verifies against its parent's checkpoints
        assert "verified, against the checkpoints its parent" in out
        assert list((tmp_path / "evidence").glob("*.bundle.json"))
        assert len(list((tmp_path / "logs").glob("process-*.log"))) == len(topology.processes())
        # through the province's bridge to a second lienthong playing the national axis, and back
        bridged = out.split("through the bridge to the national axis")[1]
        assert "sends " in bridged
        assert "to 000.00.00.G09: accepted" in bridged
        assert "the ministry's system fetched it at national-axis" in bridged
        assert "holds the ministry's statuses: 03, 06" in bridged
        assert "the legacy-signed one reached 000.22.31.H53, labelled: legacy" in bridged
        assert f"held at province-h53{suffix}: " in bridged
        assert "held for an operator: signature.missing" in bridged
        assert "released, it reached 000.22.31.H53: yes" in bridged
    finally:
        await delete_queues(tree_queues(topology))


def tree_queues(topology: Topology) -> list[str]:
    nodes = [(node.id, node.parent) for node in topology.nodes] + [(NATIONAL, None)]
    return [name for node, parent in nodes for name in queues_of(node, parent)]


async def sdk_send_commune_to_ministry(folder: Path, topology: Topology) -> None:
    """A QLVB system speaking the national axis SDK's protocol (the test's own client, from
    the documented scheme) sends from a commune; the ministry's system receives it."""
    faces = json.loads((folder / "http.json").read_text(encoding="utf-8"))
    sender, ministry = topology.demo_sender, "000.00.00.G14"
    entry, home = topology.node_of(sender), topology.node_of(ministry)
    data = sandbox_document(folder / "pki", sender, ministry, 777)
    base = {name: faces[name]["url"] for name in (entry, home)}
    async with (
        aiohttp.ClientSession(base_url=base[entry]) as at_commune,
        aiohttp.ClientSession(base_url=base[home]) as at_central,
    ):
        commune = Sdk(at_commune, sender, faces[entry]["sdk_secrets"][sender].encode())  # type: ignore[arg-type]
        central = Sdk(at_central, ministry, faces[home]["sdk_secrets"][ministry].encode())  # type: ignore[arg-type]
        sent = await commune.send(data, sender)
        assert (sent.status, sent.json["status"], sent.json["ErrorCode"]) == (200, "OK", "0")
        doc_id = sent.json["DocId"]
        async with asyncio.timeout(60):
            while not any(r["docId"] == doc_id for r in await central.received()):  # noqa: ASYNC110 - polls the node
                await asyncio.sleep(0.2)
        got = await central.call("getEdoc", docId=doc_id)
        assert base64.b64decode(got.json["data"]) == data  # the exact bytes, at the ministry
        done = await central.call("updateStatus", docId=doc_id, status="done")
        assert done.json["status"] == "OK"
        assert not any(r["docId"] == doc_id for r in await central.received())


async def test_a_directory_signed_at_the_root_reaches_the_commune_node_while_the_tree_runs(
    tmp_path: Path,
) -> None:
    suffix = f"-{uuid.uuid4().hex[:6]}"
    topology = load_topology(topology_file(), suffix)
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "sandbox",
            "--dir",
            str(tmp_path),
            f"--suffix={suffix}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert sandbox.stdout is not None
        async with asyncio.timeout(120):
            while "The tree runs until Ctrl-C" not in await asyncio.to_thread(
                sandbox.stdout.readline
            ):
                assert sandbox.poll() is None, "the sandbox stopped"
        await sdk_send_commune_to_ministry(tmp_path, topology)
        source = tmp_path / "pki" / "directory.toml"
        source.write_text(
            source.read_text(encoding="utf-8").replace("version = 1", "version = 2"),
            encoding="utf-8",
        )
        root = tmp_path / "nodes" / f"central{suffix}" / "node.toml"
        signed = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "directory",
                "sign",
                "--config",
                str(root),
                str(source),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert signed.returncode == 0, signed.stderr
        kept = tmp_path / "nodes" / f"commune-22-31-h53{suffix}" / "directory.json"

        def versions() -> dict[str, int]:
            return {
                node.id: json.loads((tmp_path / "nodes" / node.id / "directory.json").read_bytes())[
                    "version"
                ]
                for node in topology.nodes
            }

        async with asyncio.timeout(60):  # root checks every 2 s, then three links down
            while json.loads(kept.read_bytes())["version"] != 2:  # noqa: ASYNC110 - another process's file
                await asyncio.sleep(0.2)
            # each other node takes it over its own link: province-h41's is not the commune's
            while set(versions().values()) != {2}:  # noqa: ASYNC110 - other processes' files
                await asyncio.sleep(0.2)
        assert versions() == {node.id: 2 for node in topology.nodes}
    finally:
        sandbox.send_signal(signal.SIGTERM)
        sandbox.communicate(timeout=60)  # reads what is left, closes the pipe
        await delete_queues(tree_queues(topology))
    assert sandbox.returncode == 0
    logs = "".join(p.read_text() for p in (tmp_path / "logs").glob("*.log"))
    assert "directory.installed" in logs
