"""``lienthong sandbox``: the whole sandbox tree on one machine, against the local RabbitMQ.

On each run it:
1. writes what the tree needs under ``--dir`` (config/sandbox.toml says what the tree
   is): the development PKI on first run, the directory, one node file per node;
2. signs the example packages with their senders' keys and admits each under the strict
   policy (the contract and the PKI work before anything moves);
3. starts the nodes, packed into at most four processes, and waits until every node
   consumes its queues and every child its links;
4. sends a signed document from a commune to a commune of another province, fetches it
   there as that agency would, and prints the route from the signed hop records; the
   recipient then answers with statuses 01, 03, 04, 05 and 06, the sender watches them
   arrive (``lienthong status``), keeps and checks the signed delivery receipt, and
   exports the evidence bundle and verifies it against its parent's checkpoints; then
   one more document goes the same way over the REST API (docs/http-api.md);
5. prints what to try next, and keeps the tree running until Ctrl-C (``--once``: stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import aio_pika

from adapters.client import NodeClient
from adapters.config_files import load_node_config, load_peer_keys
from adapters.pki_files import load_directory
from adapters.sandbox_bridge import NATIONAL, bridged, start_national
from adapters.sandbox_http import over_http
from adapters.sandbox_lifecycle import lifecycle
from adapters.sandbox_tree import Topology, load_topology, topology_file, write_tree
from adapters.store_sqlite import SqliteStore
from exchange.admission import Admission, admit
from exchange.contract import schema_dir
from exchange.edxml import sender_id
from exchange.envelope import open_envelope
from exchange.errors import LienthongError
from exchange.links import down_queue
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore
from exchange.xmlsafe import parse

AMQP_URL = os.environ.get("LIENTHONG_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
READY_TIMEOUT_S = 90.0
ARRIVAL_TIMEOUT_S = 60.0


def run(
    folder: Path,
    *,
    once: bool = False,
    suffix: str = "",
    parent_urls: Mapping[str, str] | None = None,
) -> int:
    folder = folder.resolve()
    topology = load_topology(topology_file(), suffix)
    unknown = set(parent_urls or {}) - {n.id for n in topology.nodes if n.parent}
    if unknown:
        print(f"sandbox: --parent-url names no child node: {', '.join(sorted(unknown))}")
        return 2
    files = write_tree(folder, topology, AMQP_URL, parent_urls)
    pki = folder / "pki"
    print(f"sandbox: {len(topology.nodes)} nodes, {len(topology.agencies)} agencies, in {folder}")
    if not _sign_examples(pki, folder / "signed"):
        return 1
    signal.signal(signal.SIGTERM, _interrupt)  # from here on, a stop stops the tree too
    processes: dict[int, subprocess.Popen[bytes]] = {}
    try:
        _start(folder, topology, files, processes)
        processes[0] = start_national(folder, files[NATIONAL])
        ok = asyncio.run(_demo(folder, topology, files, processes))
        if not ok:
            return 1
        _print_next(folder, topology, files, once=once)
        if once:
            return 0
        print("\nThe tree runs until Ctrl-C. Logs: " + str(folder / "logs"), flush=True)
        _wait_for_interrupt(processes)
    except KeyboardInterrupt:
        print("sandbox: stopped")
        return 130
    else:
        return 0
    finally:
        _stop(processes)


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _sign_examples(pki: Path, out: Path) -> bool:
    ctx = Admission(
        trust=TrustStore.from_pem((pki / "ca.pem").read_bytes()),
        binder=load_directory(pki / "directory.toml"),
    )
    out.mkdir(parents=True, exist_ok=True)
    examples = sorted((schema_dir() / "examples" / "valid").glob("*.edxml"))
    failures = []
    for example in examples:
        data = example.read_bytes()
        sender = sender_id(parse(data).getroot()) or ""
        try:
            signed = sign(data, _agency_key(pki, sender))
            admit(signed, STRICT, ctx)
            (out / example.name).write_bytes(signed)
        except (LienthongError, OSError) as exc:
            failures.append(f"  {example.name}: FAILED {exc}")
    print(
        f"examples: {len(examples) - len(failures)} of {len(examples)} signed by their senders "
        f"and admitted under the strict policy, in {out}"
    )
    print("\n".join(failures), end="\n" if failures else "")
    return not failures


def _agency_key(pki: Path, organ_id: str) -> SigningKey:
    return SigningKey.from_pem(
        (pki / "agencies" / f"{organ_id}.key").read_bytes(),
        (pki / "agencies" / f"{organ_id}.pem").read_bytes(),
    )


def _start(
    folder: Path,
    topology: Topology,
    files: dict[str, Path],
    processes: dict[int, subprocess.Popen[bytes]],
) -> None:
    """Start the node processes into ``processes``, so that whatever started is stopped."""
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    for number, nodes in topology.processes().items():
        command = [sys.executable, "-m", "adapters.cli", "serve", "--log-level", "info"]
        for node in nodes:
            command += ["--config", str(files[node.id])]
        with open(logs / f"process-{number}.log", "ab") as log:
            processes[number] = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log, cwd=folder
            )
        print(f"process {number} (pid {processes[number].pid}): {', '.join(n.id for n in nodes)}")


async def _demo(
    folder: Path,
    topology: Topology,
    files: dict[str, Path],
    processes: dict[int, subprocess.Popen[bytes]],
) -> bool:
    try:
        await _ready(topology, processes)
    except (TimeoutError, RuntimeError) as exc:
        print(f"sandbox: the tree did not come up: {exc}; see {folder / 'logs'}")
        return False
    sender, recipient = topology.demo_sender, topology.demo_recipient
    entry, exit_ = topology.node_of(sender), topology.node_of(recipient)
    number = int(time.time()) % 1_000_000
    data = _document(folder / "pki", sender, recipient, number)
    print(f"\nsending document {number}/UBND-VP from {sender} (node {entry}) to {recipient}")
    async with NodeClient(AMQP_URL, entry, timeout_s=30) as client:
        (answer,) = await client.submit([data], as_organ=sender)
    print(f"  {entry} answered: {answer.outcome}, message {answer.message_id} ({answer.level})")
    if answer.outcome != "accepted":
        print(f"  [{answer.code}] {answer.reason}")
        return False
    async with NodeClient(AMQP_URL, exit_, timeout_s=30) as client:
        deadline = time.monotonic() + ARRIVAL_TIMEOUT_S
        while not (found := await client.fetch(recipient)):
            if time.monotonic() > deadline:
                print(f"  not in {recipient}'s mailbox after {ARRIVAL_TIMEOUT_S:.0f} s")
                return False
            await asyncio.sleep(0.2)
        await client.mark_fetched(recipient, [f.message_id for f in found])
    arrived = next(f for f in found if f.message_id == answer.message_id)
    same = "byte-identical" if arrived.data == data else "DIFFERENT BYTES"
    print(f"  fetched by {recipient} at node {exit_}: {len(arrived.data)} bytes, {same}")
    route = await _route(files[exit_], arrived.message_id, arrived.data)
    print("  route, from the signed hop records:\n" + "\n".join(f"    {hop}" for hop in route))
    if arrived.data != data:
        return False
    followed = await lifecycle(
        amqp_url=AMQP_URL,
        folder=folder,
        files=files,
        entry=entry,
        exit_=exit_,
        parent=next(n.parent for n in topology.nodes if n.id == entry),
        sender=sender,
        recipient=recipient,
        key=_agency_key(folder / "pki", recipient),
        message_id=str(answer.message_id),
        number=number,
        data=data,
    )
    if not followed:
        return False
    again = _document(folder / "pki", sender, recipient, number + 1)
    if not await over_http(
        folder, entry=entry, exit_=exit_, sender=sender, recipient=recipient, data=again
    ):
        return False
    return await bridged(folder, topology, files, AMQP_URL)


async def _ready(topology: Topology, processes: dict[int, subprocess.Popen[bytes]]) -> None:
    """Until every node consumes its inbound queue and every child its links."""
    queues = [f"lienthong.{n.id}.inbound" for n in topology.nodes]
    queues += [down_queue(n.parent, n.id, "normal") for n in topology.nodes if n.parent]
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, asyncio.timeout(READY_TIMEOUT_S):
        for queue in queues:
            while True:
                for number, process in processes.items():
                    if process.poll() is not None:
                        raise RuntimeError(f"process {number} exited ({process.returncode})")
                channel = await connection.channel()
                try:
                    declared = await channel.declare_queue(queue, passive=True)
                    if declared.declaration_result.consumer_count:
                        break
                except aio_pika.exceptions.ChannelClosed:
                    pass  # not declared yet
                finally:
                    if not channel.is_closed:
                        await channel.close()
                await asyncio.sleep(0.2)
    print(f"tree up: {len(topology.nodes)} nodes consume their queues and links")


def _document(pki: Path, sender: str, recipient: str, number: int) -> bytes:
    """The example new document, from ``sender`` to ``recipient``, signed by the sender."""
    data = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    start = data.index(b"<edXML:To>")
    end = data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    to = f"<edXML:To><edXML:OrganId>{recipient}</edXML:OrganId></edXML:To>".encode()
    data = data[:start] + to + data[end:]
    data = data.replace(b"000.00.00.G22", sender.encode())
    data = data.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
    data = data.replace(b"<edXML:CodeNumber>125<", f"<edXML:CodeNumber>{number}<".encode())
    return sign(data, _agency_key(pki, sender))


async def _route(node_file: Path, message_id: str, data: bytes) -> list[str]:
    config = load_node_config(node_file)
    assert config.store.path is not None
    store = SqliteStore(config.store.path)
    try:
        wire = await store.envelope(message_id)
    finally:
        await store.close()
    envelope = open_envelope(wire, data, load_peer_keys(config))
    return [f"{at}  {node}" for node, at in zip(envelope.hops, envelope.hop_times, strict=True)]


def _print_next(folder: Path, topology: Topology, files: dict[str, Path], *, once: bool) -> None:
    me = _command()
    central, province = (
        files[topology.node_of("000.00.00.G22")],
        files[topology.node_of("000.00.00.H53")],
    )
    print(
        "\nTry next" + (" (start the tree again without --once)" if once else "") + ":\n"
        f"  {me} send --config {central} --as 000.00.00.G22 {folder}/signed/document-new.edxml\n"
        f"  {me} fetch --config {province} --as 000.00.00.H53 -o inbox/\n"
        f"  {me} status --config {central} --as 000.00.00.G22 <message id or DocumentId>\n"
        f"  {me} verify-receipt --config {central} {folder}/receipts/*.receipt.xml\n"
        f"  {me} ops search --config {central} --party 000.00.00.H53\n"
        f"  {me} evidence --verify {folder}/evidence/*.bundle.json --config {central}\n"
        f"  {me} ops dlq list --config {central}\n"
        f"  {me} ops links --config {central} --token-file {central.parent}/operator.token\n"
        f"  # the operator console: {_console_url(folder, topology.root)} "
        f"(its token is in {central.parent}/operator.token)\n"
        f"  # a new directory: raise `version` in {folder}/pki/directory.toml, then\n"
        f"  {me} directory sign --config {central} {folder}/pki/directory.toml\n"
        f"  {me} directory show --config {province}\n"
        f"  {me} inspect {folder}/signed/document-new.edxml\n"
        f"  {me} validate {schema_dir()}/examples/invalid/*.edxml"
    )


def _console_url(folder: Path, node: str) -> str:
    faces: dict[str, dict[str, object]] = json.loads((folder / "http.json").read_text("utf-8"))
    return f"{faces[node]['url']}/ops/"


def _wait_for_interrupt(processes: dict[int, subprocess.Popen[bytes]]) -> None:
    """Until Ctrl-C or SIGTERM (then the tree is stopped by the caller), or a process ends."""
    with contextlib.suppress(KeyboardInterrupt):
        while all(p.poll() is None for p in processes.values()):
            time.sleep(1.0)
        stopped = [n for n, p in processes.items() if p.poll() is not None]
        print(f"sandbox: process {stopped[0]} stopped; stopping the others")


def _stop(processes: dict[int, subprocess.Popen[bytes]]) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _command() -> str:
    """How the person at the terminal runs lienthong (e.g. .venv/bin/lienthong)."""
    invoked = Path(sys.argv[0])
    if invoked.name == "lienthong" and invoked.exists():
        relative = os.path.relpath(invoked)
        return relative if "/" in relative else f"./{relative}"
    return "lienthong"
