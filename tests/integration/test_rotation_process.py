"""Keys and certificates change while packages flow, and nothing fails (docs/operations.md,
"Rotating keys and certificates").

Two node processes on the real RabbitMQ, ``central`` and its child ``province``, under a
steady stream of documents both ways. Meanwhile, with no restart:

1. ``province`` rotates its node key: its new certificate is pinned beside the old one
   (``nodes/<id>.pem`` holds both), then its key file is replaced;
2. an agency's renewed signing certificate is added to it through a directory update;
3. another agency's certificate is revoked through a CRL.

Every package sent by an agency in good standing is accepted and delivered exactly once;
the revoked agency's packages are refused from the moment the CRL is taken up; receipts
signed with the old node key and with the new one both verify; and the node processes
are the ones started at the beginning.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapters.client import NodeClient
from adapters.config_files import load_node_certs
from adapters.store_sqlite import SqliteStore
from exchange.devpki import Issued, issue, make_crl
from exchange.evidence import EventKind
from exchange.receipt import read_receipt
from exchange.trust import fingerprint
from tests.integration.broker import AMQP_URL
from tests.integration.tree import TreeProcesses, signed_document

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PARENTS = {"central": None, "province": "central"}
CENTRAL, PROVINCE, REVOKED = "000.00.00.G22", "000.00.00.H53", "000.00.00.H41"
HOMES = {CENTRAL: "central", PROVINCE: "province", REVOKED: "province"}
RATE = 6.0  # packages a second, in all


def _write(path: Path, data: bytes) -> None:
    """As an operator's tool should: a new file, then renamed over the old one."""
    fresh = path.with_suffix(path.suffix + ".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)


def _load(pki: Path, name: str) -> Issued:
    key = serialization.load_pem_private_key((pki / f"{name}.key").read_bytes(), None)
    cert = x509.load_pem_x509_certificate((pki / f"{name}.pem").read_bytes())
    return Issued(key, cert)  # type: ignore[arg-type]


class Flow:
    """Documents both ways at a steady rate, and what each sender was told."""

    def __init__(self, tree: TreeProcesses) -> None:
        self.tree = tree
        self.accepted: dict[str, list[str]] = {}  # sender -> message ids
        self.refused: list[tuple[str, str]] = []  # (sender, code)
        self.number = 1000
        self.senders = [(PROVINCE, CENTRAL, "province"), (CENTRAL, PROVINCE, "central")]
        self.renewed: Path | None = None  # a pki folder holding PROVINCE's renewed certificate

    async def send(self, sender: str, recipient: str, node: str, pki: Path | None = None) -> str:
        self.number += 1
        data = signed_document(pki or self.tree.pki, sender, [recipient], self.number)
        async with NodeClient(AMQP_URL, self.tree.ids[node], timeout_s=60) as client:
            (answer,) = await client.submit([data], as_organ=sender)
        if answer.outcome == "accepted":
            self.accepted.setdefault(sender, []).append(str(answer.message_id))
        else:
            self.refused.append((sender, str(answer.code)))
        return answer.outcome if answer.outcome == "accepted" else str(answer.code)

    async def run(self, stop: asyncio.Event) -> None:
        turn = 0
        while not stop.is_set():
            sender, recipient, node = self.senders[turn % len(self.senders)]
            pki = self.renewed if sender == PROVINCE and self.renewed and turn % 4 == 0 else None
            await self.send(sender, recipient, node, pki)
            turn += 1
            await asyncio.sleep(1 / RATE)


@pytest.fixture
async def tree(tmp_path: Path) -> AsyncIterator[TreeProcesses]:
    crl = tmp_path / "ca.crl"
    processes = TreeProcesses(tmp_path, PARENTS, HOMES, trust_lines=[f'crls = ["{crl}"]'])
    crl.write_bytes(make_crl(_load(processes.pki, "ca"), []))  # nothing revoked, yet
    yield processes
    await processes.cleanup()


def _reloads(tree: TreeProcesses, name: str) -> int:
    log = tree.folder / name / "node.log"
    return (
        len(re.findall(r"trust\.reloaded", log.read_text(errors="replace"))) if log.exists() else 0
    )


async def _taken_up(tree: TreeProcesses, name: str, before: int) -> None:
    """Until the node says it took up a change of its trust files (it looks every 5 s)."""
    async with asyncio.timeout(30):
        while _reloads(tree, name) <= before:  # noqa: ASYNC110 (another process's log)
            await asyncio.sleep(0.2)


async def _receipts(tree: TreeProcesses, name: str) -> list[bytes]:
    """The signed receipts the node holds: of its own deliveries, and those reported back
    to it by the node that delivered its senders' packages."""
    import base64

    store = SqliteStore(tree.folder / name / "store")
    found = []
    try:
        await store.migrate()
        for chain in await store.chain_heads():
            after = 0
            while entries := await store.log_entries(chain=chain, after=after, limit=1000):
                for entry in entries:
                    event = entry.event
                    if event.kind is EventKind.DELIVERED and event.detail.get("receipt"):
                        found.append(base64.b64decode(str(event.detail["receipt"])))
                after = entries[-1].seq
    finally:
        await store.close()
    return found


async def test_rotation_and_revocation_under_load_fail_no_package(tree: TreeProcesses) -> None:
    started = {name: tree.start(name) for name in PARENTS}
    for name in PARENTS:
        await tree.ready(name)
    flow, stop = Flow(tree), asyncio.Event()
    # before anything changes: each agency's first document goes through
    assert await flow.send(REVOKED, CENTRAL, "province") == "accepted"
    running = asyncio.create_task(flow.run(stop))
    await asyncio.sleep(4)

    # 1. province's node key: the new certificate pinned beside the old one, then the key
    nodes, province = tree.pki / "nodes", tree.ids["province"]
    old_node = _load(nodes, province)
    new_node = issue(_load(tree.pki, "ca"), province, role="node", key_type="ec")
    before = {name: _reloads(tree, name) for name in PARENTS}
    _write(nodes / f"{province}.pem", old_node.cert_pem + new_node.cert_pem)
    await asyncio.sleep(1)
    _write(nodes / f"{province}.key", new_node.key_pem)
    for name in PARENTS:
        await _taken_up(tree, name, before[name])
    await asyncio.sleep(4)

    # 2. PROVINCE's renewed signing certificate, bound to it by a directory update
    renewed = issue(_load(tree.pki, "ca"), PROVINCE)
    (tree.folder / "renewed" / "agencies").mkdir(parents=True)
    _write(tree.folder / "renewed" / "agencies" / f"{PROVINCE}.key", renewed.key_pem)
    _write(tree.folder / "renewed" / "agencies" / f"{PROVINCE}.pem", renewed.cert_pem)
    refused_before = await flow.send(PROVINCE, CENTRAL, "province", tree.folder / "renewed")
    assert refused_before != "accepted", "a certificate the directory does not bind yet"
    flow.refused.pop()  # expected: not a failure of the change
    directory = (tree.pki / "directory.toml").read_text()
    old_print = fingerprint(_load(tree.pki / "agencies", PROVINCE).cert)
    before = {name: _reloads(tree, name) for name in PARENTS}
    _write(
        tree.pki / "directory.toml",
        directory.replace(
            f'fingerprints = ["{old_print}"]',
            f'fingerprints = ["{old_print}", "{fingerprint(renewed.cert)}"]',
        ).encode(),
    )
    await _taken_up(tree, "province", before["province"])
    flow.renewed = tree.folder / "renewed"  # from now on, some documents signed with it
    await asyncio.sleep(4)

    # 3. REVOKED's certificate, revoked by a new CRL
    revoked_cert = _load(tree.pki / "agencies", REVOKED).cert
    before = {name: _reloads(tree, name) for name in PARENTS}
    _write(tree.folder / "ca.crl", make_crl(_load(tree.pki, "ca"), [revoked_cert]))
    await _taken_up(tree, "province", before["province"])
    assert await flow.send(REVOKED, CENTRAL, "province") == "certificate.revoked"
    flow.refused.pop()
    await asyncio.sleep(4)
    stop.set()
    await running

    assert flow.refused == [], "a package of an agency in good standing failed"
    assert len(flow.accepted[PROVINCE]) > 20
    assert len(flow.accepted[CENTRAL]) > 20
    sent_up = flow.accepted[PROVINCE] + flow.accepted[REVOKED]
    arrived_up = await tree.wait_for_mailbox(CENTRAL, len(sent_up), timeout=90)
    arrived_down = await tree.wait_for_mailbox(PROVINCE, len(flow.accepted[CENTRAL]), timeout=90)
    assert sorted(arrived_up) == sorted(sent_up), "lost or twice"
    assert sorted(arrived_down) == sorted(flow.accepted[CENTRAL]), "lost or twice"
    assert all(p.poll() is None for p in started.values()), "a node restarted or died"
    assert [len(tree.processes[name]) for name in PARENTS] == [1, 1]

    # receipts of province's deliveries, signed before and after its rotation: all verify
    deadline = time.monotonic() + 60
    while len(receipts := await _receipts(tree, "central")) < len(flow.accepted[CENTRAL]):
        assert time.monotonic() < deadline, "receipts did not come back to the sender's node"
        await asyncio.sleep(0.5)
    pinned = load_node_certs(nodes)
    signers = {read_receipt(r, pinned).signer_fingerprint for r in receipts}
    old, new = fingerprint(old_node.cert), fingerprint(new_node.cert)
    province_signers = {s for s in signers if s in (old, new)}
    assert province_signers == {old, new}, "receipts from both sides of the rotation"
