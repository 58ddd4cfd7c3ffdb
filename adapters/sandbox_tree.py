"""The sandbox tree's files: its topology (config/sandbox.toml), the development PKI, the
directory that binds agencies to certificates and home nodes, and one node file per node.

Everything is written under the sandbox folder; keys are made once and kept, the
directory and node files are rewritten on every run from the topology.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import socket
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from cryptography import x509

from adapters.pki_files import init_pki
from exchange.directory_doc import sign_directory
from exchange.envelope import NodeKey
from exchange.errors import ConfigurationError
from exchange.trust import fingerprint


@dataclass(frozen=True)
class SandboxNode:
    id: str
    parent: str | None
    process: int


@dataclass(frozen=True)
class SandboxAgency:
    organ_id: str
    name: str
    home_node: str


@dataclass(frozen=True)
class Topology:
    nodes: tuple[SandboxNode, ...]
    agencies: tuple[SandboxAgency, ...]
    demo_sender: str
    demo_recipient: str

    def node_of(self, organ_id: str) -> str:
        return next(a.home_node for a in self.agencies if a.organ_id == organ_id)

    @property
    def root(self) -> str:
        return next(n.id for n in self.nodes if n.parent is None)

    def processes(self) -> dict[int, list[SandboxNode]]:
        grouped: dict[int, list[SandboxNode]] = {}
        for node in self.nodes:
            grouped.setdefault(node.process, []).append(node)
        return dict(sorted(grouped.items()))


def topology_file() -> Path:
    """config/sandbox.toml: inside an installed wheel, or in a checkout."""
    packaged = resources.files("adapters").joinpath("_sandbox.toml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "config" / "sandbox.toml"


def load_topology(path: Path, suffix: str = "") -> Topology:
    """The sandbox topology; ``suffix`` is added to every node id (tests run their own)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            SandboxNode(
                id=n["id"] + suffix,
                parent=n["parent"] + suffix if n.get("parent") else None,
                process=int(n["process"]),
            )
            for n in data["node"]
        )
        agencies = tuple(
            SandboxAgency(a["organ_id"], a["name"], a["home_node"] + suffix) for a in data["agency"]
        )
        demo = data["demo"]
        topology = Topology(nodes, agencies, demo["sender"], demo["recipient"])
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigurationError(f"{path}: not a sandbox topology: {exc}") from exc
    known = {n.id for n in nodes}
    for agency in agencies:
        if agency.home_node not in known:
            raise ConfigurationError(
                f"{path}: agency {agency.organ_id} names home node {agency.home_node!r}, "
                "which is not a node of the sandbox"
            )
    return topology


def write_tree(
    folder: Path, topology: Topology, amqp_url: str, parent_urls: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """The PKI (made once), the directory, and a node file per node; returns the node
    files by node id. ``parent_urls``: a node whose link to its parent goes elsewhere than
    ``amqp_url`` (through a proxy, to watch it break)."""
    from adapters.sandbox_bridge import (
        NATIONAL,
        bridging_node,
        ministry_entry,
        ministry_pki,
        write_national,
    )

    pki = folder / "pki"
    init_pki(
        pki, [a.organ_id for a in topology.agencies], [n.id for n in topology.nodes], key_type="ec"
    )
    ministry_pki(pki)
    text = directory_toml(pki, topology) + "\n".join(ministry_entry(pki))
    (pki / "directory.toml").write_text(text, encoding="utf-8")
    root = topology.root
    key = NodeKey.from_pem(root, (pki / "nodes" / f"{root}.key").read_bytes())
    signed = sign_directory(tomllib.loads(text), key)  # the root's, as its operator would
    files = {}
    faces: dict[str, dict[str, object]] = {}
    ports = {node.id: free_port() for node in topology.nodes}
    # each child's link token at its parent: large packages' bytes go over HTTP between them
    link_tokens = {node.id: secrets.token_urlsafe(24) for node in topology.nodes if node.parent}
    for node in topology.nodes:
        home = folder / "nodes" / node.id
        home.mkdir(parents=True, exist_ok=True)
        (home / "directory.json").write_bytes(signed)  # each node keeps its own copy
        config = home / "node.toml"
        children = {n.id: link_tokens[n.id] for n in topology.nodes if n.parent == node.id}
        http, faces[node.id] = _http_face(node, topology, home, ports[node.id], children)
        through = (parent_urls or {}).get(node.id)
        link = [f'parent_url = "{through}"', "heartbeat_s = 5"] if through else []
        if node.parent is not None:
            token = home / "link.token"
            token.touch(mode=0o600)
            token.write_text(link_tokens[node.id], encoding="utf-8")
            link += [
                f'transfer_url = "http://127.0.0.1:{ports[node.parent]}"',
                'transfer_token_file = "link.token"',
            ]
        config.write_text(_node_file(node, pki, amqp_url, root, link) + http, encoding="utf-8")
        files[node.id] = config
    # where each node's REST API listens and each agency's token: for the demo and people
    (folder / "http.json").write_text(json.dumps(faces, indent=2), encoding="utf-8")
    files[NATIONAL] = write_national(folder, topology, amqp_url, files[bridging_node(topology)])
    return files


def free_port() -> int:
    """A port nobody listens on, below the kernel's range for outgoing connections: a port
    from that range, free when probed, may be taken by a connection to the broker before
    the node binds it (EADDRINUSE)."""
    low = _ephemeral_low()
    for _ in range(200):
        port = 20000 + secrets.randbelow(max(1000, low - 20000))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # a crowded machine: any port the kernel gives
        probe.bind(("127.0.0.1", 0))
        found: int = probe.getsockname()[1]
        return found


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _http_face(
    node: SandboxNode, topology: Topology, home: Path, port: int, children: Mapping[str, str]
) -> tuple[str, dict[str, object]]:
    """The node's [http] table on ``port``: per agency it hosts, a REST token (kept only as
    its SHA-256 in the node file) and an SDK systemid (the OrganId) with its HMAC secret in
    a file, new each run; an operator token; and each child's link token."""
    hosted = [a.organ_id for a in topology.agencies if a.home_node == node.id]
    tokens = {organ: secrets.token_urlsafe(24) for organ in hosted}
    sdk = {organ: secrets.token_hex(24) for organ in hosted}
    operator = secrets.token_urlsafe(24)
    (home / "sdk").mkdir(exist_ok=True)
    lines = ["", "[http]", f'listen = "127.0.0.1:{port}"']
    for organ, token in tokens.items():
        (home / "sdk" / f"{organ}.secret").write_text(sdk[organ], encoding="utf-8")
        lines += [
            "",
            f'[http.clients."{organ}"]',
            f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"',
            f'systemid = "{organ}"',
            f'hmac_secret_file = "sdk/{organ}.secret"',
            f'organs = ["{organ}"]',
        ]
    token_file = home / "operator.token"  # for `lienthong ops … --token-file`
    token_file.touch(mode=0o600)
    token_file.write_text(operator, encoding="utf-8")
    for child, token in children.items():
        lines += ["", f'[http.links."{child}"]']
        lines += [f'token_sha256 = "{hashlib.sha256(token.encode()).hexdigest()}"']
    lines += ["", "[http.operators.operator]"]
    lines += [f'token_sha256 = "{hashlib.sha256(operator.encode()).hexdigest()}"', ""]
    face: dict[str, object] = {
        "url": f"http://127.0.0.1:{port}",
        "tokens": tokens,
        "sdk_endpoint": f"http://127.0.0.1:{port}/vdxp",
        "sdk_secrets": sdk,
        "operator": operator,
    }
    return "\n".join(lines), face


def directory_toml(pki: Path, topology: Topology) -> str:
    """The directory of the sandbox: its node tree, and each agency with its home node and
    the fingerprint of its certificate in ``pki``."""
    lines = ["# The sandbox directory, written by `lienthong sandbox` from its topology.", ""]
    lines += ["version = 1", ""]
    for node in topology.nodes:
        lines += ["[[node]]", f'id = "{node.id}"']
        lines += [f'parent = "{node.parent}"'] if node.parent else []
        lines += [""]
    for agency in topology.agencies:
        cert = x509.load_pem_x509_certificate(
            (pki / "agencies" / f"{agency.organ_id}.pem").read_bytes()
        )
        lines += [
            "[[agency]]",
            f'organ_id = "{agency.organ_id}"',
            f'name = "{agency.name}"',
            f'home_node = "{agency.home_node}"',
            f'fingerprints = ["{fingerprint(cert)}"]',
            "",
        ]
    return "\n".join(lines)


def _node_file(
    node: SandboxNode, pki: Path, amqp_url: str, root: str, link_lines: Sequence[str] = ()
) -> str:
    parent = f'parent = "{node.parent}"\n' if node.parent else ""
    link = "[link]\n" + "".join(f"{line}\n" for line in link_lines) + "\n" if link_lines else ""
    return (
        f"# node {node.id} of the sandbox, written by `lienthong sandbox`\n"
        f'[node]\nid = "{node.id}"\n{parent}\n'
        f'[rabbitmq]\nurl = "{amqp_url}"\nprefetch = 16\n\n{link}'
        '[store]\nkind = "sqlite"\npath = "store"\n'
        "checkpoint_every_s = 2  # the chain head, signed for the parent, often: a sandbox\n\n"
        f'[trust]\nca = "{pki}/ca.pem"\ndirectory = "directory.json"\n'
        f'directory_signer = "{root}"\ndirectory_check_s = 2\n'
        f'node_key = "{pki}/nodes/{node.id}.key"\nnode_certs = "{pki}/nodes"\n\n'
        "[limits]\nadmission_workers = 0  # several nodes share a process: admit in a thread\n"
    )
