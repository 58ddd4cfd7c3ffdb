"""The second half of the sandbox demo: the recipient answers with the edXML statuses, the
sender watches its document move from accepted to done, keeps the signed delivery receipt
and checks it offline, as an auditor would."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.client import NodeClient
from adapters.config_files import load_node_certs, load_node_config
from exchange.contract import schema_dir
from exchange.errors import LienthongError
from exchange.receipt import check_against_package, read_receipt
from exchange.reporting import VIETNAM
from exchange.signing import SigningKey, sign

STEPS = ("01", "03", "04", "05", "06")  # arrived, registered, assigned, processing, done
ANSWER_TIMEOUT_S = 60.0


def status_package(key: SigningKey, code: str, sender: str, recipient: str, number: int) -> bytes:
    """The example status ``code`` about ``sender``'s document to ``recipient``: from the
    recipient, or for 13 (recall) from the sender; ``key`` is its author's."""
    (example,) = (schema_dir() / "examples" / "valid").glob(f"status-{code}-*.edxml")
    data = example.read_bytes()
    stamp = datetime.now(VIETNAM).strftime("%Y/%m/%d %H:%M:%S")
    data = data.replace(b"2026/11/20 10:30:00", stamp.encode())
    data = data.replace(b"000.00.00.H53", recipient.encode())
    data = data.replace(b"000.00.00.G22", sender.encode())
    data = data.replace(b"125/UBND-VP", f"{number}/UBND-VP".encode())
    return sign(data, key)


async def _sender_sees(
    client: NodeClient, sender: str, message_id: str, recipient: str, want: str
) -> dict[str, Any]:
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:
        view = await client.status(sender, message_id)
        row: dict[str, Any] = next(r for r in view["recipients"] if r["recipient"] == recipient)
        if (want.isdigit() and row["status"] == want) or row["transport"] == want:
            return row
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sender still sees {row['transport']}/{row['status']}")
        await asyncio.sleep(0.2)


async def lifecycle(
    *,
    amqp_url: str,
    folder: Path,
    files: dict[str, Path],
    entry: str,
    exit_: str,
    parent: str | None,
    sender: str,
    recipient: str,
    key: SigningKey,
    message_id: str,
    number: int,
    data: bytes,
) -> bool:
    print(f"\n{recipient} answers; {sender} asks its node ({entry}) where the document stands:")
    async with (
        NodeClient(amqp_url, entry, timeout_s=30) as at_sender,
        NodeClient(amqp_url, exit_, timeout_s=30) as at_recipient,
    ):
        row = await _sender_sees(at_sender, sender, message_id, recipient, "fetched")
        print(f"  transport: {row['transport']} at node {row['node']}")
        for code in STEPS:
            package = status_package(key, code, sender, recipient, number)
            (answer,) = await at_recipient.submit([package], as_organ=recipient)
            if answer.outcome != "accepted":
                print(f"  status {code}: {answer.outcome} [{answer.code}] {answer.reason}")
                return False
            row = await _sender_sees(at_sender, sender, message_id, recipient, code)
            print(f"  status {row['status']} {row['status_meaning']}")
        view = await at_sender.status(sender, message_id)
    if not _keep_receipts(folder, files[entry], view, data):
        return False
    return await _evidence(folder, files, entry, parent, str(view["document_id"]))


def _keep_receipts(folder: Path, node_file: Path, view: dict[str, Any], data: bytes) -> bool:
    """Write the signed receipts where the sender keeps them, and check each offline."""
    certs = load_node_certs(load_node_config(node_file).trust.node_certs)
    out = folder / "receipts"
    out.mkdir(exist_ok=True)
    if not view["receipts"]:
        print("  no signed delivery receipt came back")
        return False
    for receipt in view["receipts"]:
        document = base64.b64decode(receipt["document"])
        path = out / f"{view['message_id']}.{receipt['node']}.receipt.xml"
        path.write_bytes(document)
        try:
            verified = read_receipt(document, certs)
            check_against_package(verified.receipt, data)
        except LienthongError as exc:
            print(f"  receipt {path}: REFUSED [{exc.code}] {exc.message}")
            return False
        print(
            f"  signed receipt of node {verified.receipt.node} for "
            f"{', '.join(verified.receipt.organ_ids)}: verifies offline, covers the exact bytes "
            f"sent\n    {path}"
        )
    return True


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _evidence(
    folder: Path, files: dict[str, Path], entry: str, parent: str | None, document_id: str
) -> bool:
    """Export the evidence bundle at the sender's node, take the parent's copy of that
    node's signed checkpoints, and verify the bundle offline against them."""
    out = folder / "evidence"
    out.mkdir(exist_ok=True)
    bundle = out / f"{entry}.bundle.json"
    kept = out / f"{entry}.checkpoints-at-{parent}.json"
    config = str(files[entry])
    against = ["--checkpoints", str(kept)] if parent is not None else []
    deadline = time.monotonic() + ANSWER_TIMEOUT_S
    while True:  # until the parent keeps a checkpoint past the last record of the document
        if parent is not None:
            took = await asyncio.to_thread(
                _cli,
                "evidence",
                "checkpoints",
                "--config",
                str(files[parent]),
                "--node",
                entry,
                "-o",
                str(kept),
            )
            if took.returncode != 0:
                print(f"  evidence checkpoints failed: {took.stdout}{took.stderr}")
                return False
        exported = await asyncio.to_thread(
            _cli, "evidence", "--config", config, document_id, "-o", str(bundle)
        )
        if exported.returncode != 0:
            print(f"  evidence export failed: {exported.stdout}{exported.stderr}")
            return False
        verified = await asyncio.to_thread(
            _cli, "evidence", "--verify", str(bundle), "--config", config, *against
        )
        covered = "no parent checkpoint covers" not in verified.stdout
        if verified.returncode != 0 or covered or time.monotonic() > deadline:
            break
        await asyncio.sleep(1.0)
    last = verified.stdout.strip().splitlines()[-1:] or ["(nothing)"]
    print(
        f"  evidence bundle of node {entry}: {last[0]}"
        + (f", against the checkpoints its parent {parent} keeps" if parent else "")
        + f"\n    {bundle}"
    )
    if verified.returncode != 0:
        print(verified.stdout + verified.stderr)
    return verified.returncode == 0
