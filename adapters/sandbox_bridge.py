"""The sandbox's national axis: a second lienthong node, alone in its tree, playing VDXP
over the SDK protocol (docs/bridge.md). It hosts a ministry, and the mailboxes the
sandbox tree's agencies have on the national axis; the province node above the demo's
commune bridges to it (the commune's province, not the tree's root).

The demo then sends a commune's document through its province's node and the bridge to
the ministry, brings the ministry's statuses 03 and 06 back, and shows how the province's
``quarantine`` policy treats the ministry's legacy-signed (RSA-SHA1) and unsigned
documents: the first admitted and labelled ``legacy``, the second held until an operator
releases it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from cryptography import x509

from adapters.client import NodeClient
from adapters.pki_files import init_pki
from adapters.sandbox_lifecycle import status_package
from exchange.contract import schema_dir
from exchange.signing import SigningKey, sign
from exchange.trust import fingerprint

if TYPE_CHECKING:
    from adapters.sandbox_tree import Topology

NATIONAL = "national-axis"
MINISTRY = "000.00.00.G09"
MINISTRY_NAME = "Bộ Nội vụ (sandbox, on the national axis)"
SYSTEM = "lienthong-sandbox"  # the tree's systemid on the national axis
TIMEOUT_S = 60.0


def ministry_pki(pki: Path) -> None:
    """The ministry's key: RSA, so that it can also sign as today's SDK does (RSA-SHA1)."""
    init_pki(pki, [MINISTRY], [NATIONAL], key_type="rsa")


def ministry_entry(pki: Path) -> list[str]:
    """The ministry in the tree's directory: its certificate binds its signatures, and no
    node of the tree hosts it (the bridge's agency list says where it is)."""
    return [
        "[[agency]]",
        f'organ_id = "{MINISTRY}"',
        f'name = "{MINISTRY_NAME}"',
        f'fingerprints = ["{_fingerprint(pki, MINISTRY)}"]',
        "",
    ]


def _fingerprint(pki: Path, organ: str) -> str:
    cert = x509.load_pem_x509_certificate((pki / "agencies" / f"{organ}.pem").read_bytes())
    return fingerprint(cert)


def bridging_node(topology: Topology) -> str:
    """The node that bridges: the one under the tree's root on the demo sender's way up
    (its province)."""
    parents = {n.id: n.parent for n in topology.nodes}
    node = topology.node_of(topology.demo_sender)
    while parents.get(node) not in (None, topology.root):
        node = str(parents[node])
    return node


def write_national(folder: Path, topology: Topology, amqp_url: str, root_file: Path) -> Path:
    """The national node's files, and the bridging node's [upstreams] table toward it;
    returns the national node's file."""
    pki = folder / "pki"
    home = folder / "nodes" / NATIONAL
    home.mkdir(parents=True, exist_ok=True)
    agencies = [(a.organ_id, a.name) for a in topology.agencies] + [(MINISTRY, MINISTRY_NAME)]
    lines = ["# The sandbox's national axis: one node, its own tree.", "version = 1", ""]
    lines += ["[[node]]", f'id = "{NATIONAL}"', ""]
    for organ, name in agencies:
        lines += [
            "[[agency]]",
            f'organ_id = "{organ}"',
            f'name = "{name}"',
            f'home_node = "{NATIONAL}"',
            f'fingerprints = ["{_fingerprint(pki, organ)}"]',
            "",
        ]
    (home / "directory.toml").write_text("\n".join(lines), encoding="utf-8")
    from adapters.sandbox_tree import free_port

    secret, token, port = secrets.token_hex(24), secrets.token_urlsafe(24), free_port()
    (home / "sandbox.secret").write_text(secret, encoding="utf-8")
    ours = ", ".join(f'"{a.organ_id}"' for a in topology.agencies)
    digest = hashlib.sha256(token.encode()).hexdigest()
    config = home / "node.toml"
    config.write_text(
        "# the national axis of the sandbox, written by `lienthong sandbox`\n"
        f'[node]\nid = "{NATIONAL}"\n\n'
        f'[rabbitmq]\nurl = "{amqp_url}"\nprefetch = 16\n\n'
        '[store]\nkind = "sqlite"\npath = "store"\n\n'
        f'[trust]\nca = "{pki}/ca.pem"\ndirectory = "directory.toml"\n'
        f'node_key = "{pki}/nodes/{NATIONAL}.key"\nnode_certs = "{pki}/nodes"\n\n'
        "[limits]\nadmission_workers = 0\n\n"
        "[sources.today]  # the national axis takes today's traffic: SHA-1, or no signature\n"
        'policy = "legacy-or-unsigned"\n\n'
        f'[http]\nlisten = "127.0.0.1:{port}"\n\n'
        f"[http.clients.{SYSTEM}]  # the sandbox tree, through its province's bridge\n"
        f'systemid = "{SYSTEM}"\nhmac_secret_file = "sandbox.secret"\norgans = [{ours}]\n\n'
        f"[http.clients.bo-noi-vu]  # the ministry's document system, over REST\n"
        f'token_sha256 = "{digest}"\norgans = ["{MINISTRY}"]\nsource = "today"\n',
        encoding="utf-8",
    )
    (home / "http.json").write_text(
        json.dumps({"url": f"http://127.0.0.1:{port}", "ministry_token": token}, indent=2),
        encoding="utf-8",
    )
    with root_file.open("a", encoding="utf-8") as out:
        out.write(
            "\n# the national axis, reached as a client over the SDK protocol (docs/bridge.md)\n"
            f'[upstreams.vdxp]\nprotocol = "vdxp"\nendpoint = "http://127.0.0.1:{port}/vdxp"\n'
            'policy = "quarantine"\npoll_every_s = 1\nagencies_every_s = 30\ndeadline_s = 10\n'
            "backoff_ceiling_s = 5\n\n"
            f'[[upstreams.vdxp.credentials]]\nname = "sandbox"\nsystemid = "{SYSTEM}"\n'
            f'secret_file = "{home / "sandbox.secret"}"\norgans = [{ours}]\n'
        )
    return config


def start_national(folder: Path, config: Path) -> subprocess.Popen[bytes]:
    logs = folder / "logs"
    logs.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "adapters.cli", "serve", "--log-level", "info"]
    with open(logs / "national-axis.log", "ab") as log:
        started = subprocess.Popen(
            [*command, "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log, cwd=folder
        )
    print(f"national axis (pid {started.pid}): {NATIONAL}, playing VDXP over the SDK protocol")
    return started


def _document(pki: Path, sender: str, recipient: str, number: int, how: str) -> bytes:
    data = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    data = data.replace(b"125/UBND-VP<", f"{number}/UBND-VP<".encode())
    data = data.replace(b"000.00.00.H53", recipient.encode())
    data = data.replace(b"000.21.31.H53", recipient.encode())  # one recipient, named twice
    data = data.replace(b"000.00.00.G22", sender.encode())
    if how == "unsigned":
        return data
    key = _key(pki, sender)
    return sign(data, key, legacy=how == "legacy")


def _key(pki: Path, organ: str) -> SigningKey:
    from adapters.sandbox import _agency_key  # the sandbox's own loader

    return _agency_key(pki, organ)


async def bridged(folder: Path, topology: Topology, files: dict[str, Path], amqp_url: str) -> bool:
    """The national-axis part of the demo; False (having said why) when a step fails."""
    pki = folder / "pki"
    face: dict[str, Any] = json.loads((folder / "nodes" / NATIONAL / "http.json").read_text())
    commune = topology.demo_sender
    entry = topology.node_of(commune)
    number = int(time.time()) % 1_000_000 + 500_000
    data = _document(pki, commune, MINISTRY, number, "strict")
    print(f"\nthrough the bridge to the national axis ({NATIONAL}, playing VDXP):")
    async with NodeClient(amqp_url, entry, timeout_s=30) as client:
        (answer,) = await client.submit([data], as_organ=commune)
    print(f"  {commune} sends {number}/UBND-VP to {MINISTRY}: {answer.outcome} at {entry}")
    if answer.outcome != "accepted":
        print(f"  [{answer.code}] {answer.reason}")
        return False
    token = {"Authorization": f"Bearer {face['ministry_token']}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        got = await _arrive(http, face["url"], token, lambda item: item.get("sender") == commune)
        if got is None:
            print(f"  not in the ministry's mailbox at {NATIONAL} after {TIMEOUT_S:.0f} s")
            return False
        print(f"  the ministry's system fetched it at {NATIONAL} (message {got['message_id']})")
        key = _key(pki, MINISTRY)
        for code in ("03", "06"):
            status = status_package(key, code, commune, MINISTRY, number)
            async with http.post(f"{face['url']}/v1/packages", data=status, headers=token) as sent:
                said = await sent.json()
            print(f"  the ministry answers {code}: {said.get('outcome')} at {NATIONAL}")
    if not await _statuses_back(amqp_url, entry, commune, number):
        return False
    return await _policies(folder, topology, files, face, amqp_url)


async def _arrive(
    http: aiohttp.ClientSession, url: str, token: dict[str, str], wanted: Any
) -> dict[str, Any] | None:
    mailbox = f"{url}/v1/agencies/{MINISTRY}/mailbox"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        async with http.get(mailbox, params={"wait": "5"}, headers=token) as page:
            items = (await page.json()).get("items", [])
        found = next((i for i in items if wanted(i)), None)
        if found is not None:
            ack = f"{url}/v1/agencies/{MINISTRY}/packages/{found['message_id']}/ack"
            async with http.post(ack, headers=token):
                pass
            return dict(found)
    return None


async def _commune_mail(amqp_url: str, node: str, organ: str, wanted: Any) -> list[Any]:
    """The agency's mail, fetched (and acknowledged) until ``wanted(mail)`` holds."""
    async with NodeClient(amqp_url, node, timeout_s=30) as client:
        deadline = time.monotonic() + TIMEOUT_S
        found: list[Any] = []
        while time.monotonic() < deadline:
            new = await client.fetch(organ)
            if new:
                found += new
                await client.mark_fetched(organ, [f.message_id for f in new])
            if wanted(found):
                break
            await asyncio.sleep(0.3)
        return found


def _about(number: int) -> Any:
    return lambda m: f"{number}/UBND-VP<".encode() in m.data


async def _statuses_back(amqp_url: str, node: str, commune: str, number: int) -> bool:
    def codes_in(mail: list[Any]) -> list[str]:
        return sorted(
            code
            for m in mail
            if m.kind == "status" and _about(number)(m)
            for code in ("03", "06")
            if f"<edXML:StatusCode>{code}<".encode() in m.data
        )

    codes = codes_in(await _commune_mail(amqp_url, node, commune, lambda m: len(codes_in(m)) == 2))
    print(
        f"  back at {node}, {commune} holds the ministry's statuses: {', '.join(codes) or 'none'}"
    )
    return codes == ["03", "06"]


async def _policies(
    folder: Path,
    topology: Topology,
    files: dict[str, Path],
    face: dict[str, Any],
    amqp_url: str,
) -> bool:
    """The ministry sends a legacy-signed and an unsigned document to the commune: the
    province's quarantine policy labels the first legacy and holds the second."""
    pki, commune = folder / "pki", topology.demo_sender
    entry, root = topology.node_of(commune), bridging_node(topology)
    token = {"Authorization": f"Bearer {face['ministry_token']}"}
    number = int(time.time()) % 1_000_000 + 700_000
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        for offset, how in ((0, "legacy"), (1, "unsigned")):
            data = _document(pki, MINISTRY, commune, number + offset, how)
            async with http.post(f"{face['url']}/v1/packages", data=data, headers=token) as sent:
                said = await sent.json()
            print(f"  the ministry sends a {how} document: {said.get('outcome')} at {NATIONAL}")
    mail = await _commune_mail(amqp_url, entry, commune, lambda m: any(map(_about(number), m)))
    legacy = [m for m in mail if _about(number)(m)]
    if not legacy:
        print(f"  the legacy-signed document did not reach {commune}")
        return False
    level = _level_at(files[root], legacy[0].message_id)
    print(f"  the legacy-signed one reached {commune}, labelled: {level}")
    held = await _held(files[root])
    if not held:
        print(f"  the unsigned one is not held at {root}")
        return False
    print(f"  the unsigned one is held at {root}: {held[0]}")
    message_id = held[0].split(":", 1)[0]
    decide = ["--by", "sandbox-operator", "--note", "checked with the ministry", message_id]
    released = _cli("ops", "quarantine", "release", "--config", str(files[root]), *decide)
    print(f"  an operator releases it: {released.stdout.strip().splitlines()[-1]}")
    unsigned = _about(number + 1)
    after = await _commune_mail(amqp_url, entry, commune, lambda m: any(map(unsigned, m)))
    arrived = any(map(unsigned, after))
    print(f"  released, it reached {commune}: {'yes' if arrived else 'no'}")
    return level == "legacy" and arrived


def _level_at(node_file: Path, message_id: str) -> str:
    shown = _cli("ops", "track", "--config", str(node_file), message_id)
    for level in ("strict", "legacy", "unsigned", "quarantined"):
        if f", {level}, received" in shown.stdout:
            return level
    return "unknown"


async def _held(node_file: Path) -> list[str]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        shown = _cli("ops", "quarantine", "list", "--config", str(node_file))
        lines = [line for line in shown.stdout.splitlines() if MINISTRY in line]
        if lines:
            return lines
        await asyncio.sleep(0.5)
    return []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
