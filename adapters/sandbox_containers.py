"""``lienthong sandbox --write-only FOLDER``: the sandbox tree's files for containers,
written and checked, with nothing started (the init service of docker-compose.yml;
docs/containers.md).

FOLDER holds one node file per node of config/sandbox.toml, ``<node id>.toml``, with
everything but the HTTP credentials: its broker, store, trust paths and ``[http] listen``.
Into ``--dir`` go the development PKI (``pki/``), the directory, and each node file
completed with the credentials of its HTTP face: a REST token and an SDK secret per agency
it hosts, an operator token, and each child's link token. Keys, tokens, secrets and the
signed directory are made once and kept, so a second run changes nothing a running node
holds; the node files are written again from FOLDER on every run.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from adapters.config_files import (
    hosted_agencies,
    load_node_config,
    load_node_key,
    load_signed_directory,
)
from adapters.durable import write_atomically
from adapters.pki_files import init_pki
from adapters.sandbox_tree import SandboxNode, Topology, directory_toml
from exchange.config import NodeConfig
from exchange.directory_doc import sign_directory
from exchange.envelope import NodeKey
from exchange.errors import ConfigurationError

WRITTEN_HERE = ("clients", "operators", "links")  # the [http] tables this module writes


def write_for_containers(folder: Path, topology: Topology, node_files: Path) -> dict[str, Path]:
    """Write the tree into ``folder`` from the node files in ``node_files``; returns the
    completed node files by node id, each loaded and its directory checked."""
    bases = _bases(node_files, topology)
    pki = folder / "pki"
    init_pki(
        pki, [a.organ_id for a in topology.agencies], [n.id for n in topology.nodes], key_type="ec"
    )
    (pki / "directory.toml").write_text(directory_toml(pki, topology), encoding="utf-8")
    link_tokens = {
        node.id: _kept(folder / token_file, lambda: secrets.token_urlsafe(24))
        for node in topology.nodes
        if (token_file := _link_token_file(bases[node.id][1]))
    }
    files = {}
    for node in topology.nodes:
        text, _ = bases[node.id]
        children = {n.id: link_tokens[n.id] for n in topology.nodes if n.parent == node.id}
        credentials = _credentials(folder, node, topology, children)
        path = folder / f"{node.id}.toml"
        write_atomically(path, (text.rstrip("\n") + "\n" + credentials).encode("utf-8"))
        files[node.id] = path
    configs = {node_id: load_node_config(path) for node_id, path in files.items()}
    _place_directory(configs, topology, pki)
    for config in configs.values():
        signed = load_signed_directory(config)
        if signed is None:
            raise ConfigurationError(
                f"{config.source_file}: key 'trust.directory_signer': expected "
                f"{topology.root!r}, whose key signs the directory, found nothing"
            )
        hosted_agencies(config, signed.directory)
        load_node_key(config)
    return files


def _bases(node_files: Path, topology: Topology) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Each node's file from ``node_files``, read and held to the topology."""
    if not node_files.is_dir():
        raise ConfigurationError(f"{node_files}: not a folder of node files (<node id>.toml)")
    known = {n.id for n in topology.nodes}
    strays = sorted(p.name for p in node_files.glob("*.toml") if p.stem not in known)
    if strays:
        raise ConfigurationError(
            f"{node_files}: {', '.join(strays)}: no such node in the sandbox topology "
            f"(its nodes: {', '.join(sorted(known))})"
        )
    bases: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for node in topology.nodes:
        path = node_files / f"{node.id}.toml"
        try:
            text = path.read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except OSError as exc:
            raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{path}: not valid TOML: {exc}") from exc
        _held_to_topology(path, data, node)
        bases[node.id] = (text, data)
    return bases


def _held_to_topology(path: Path, data: Mapping[str, Any], node: SandboxNode) -> None:
    table = data.get("node", {})
    if table.get("id") != node.id or table.get("parent") != node.parent:
        raise ConfigurationError(
            f"{path}: key 'node': expected id {node.id!r} and parent {node.parent!r} as in "
            f"the sandbox topology, found id {table.get('id')!r} and parent "
            f"{table.get('parent')!r}"
        )
    http = data.get("http")
    if not isinstance(http, Mapping) or "listen" not in http:
        raise ConfigurationError(
            f"{path}: key 'http.listen': expected host:port (the container's health check "
            "asks /healthz there), found nothing"
        )
    for key in WRITTEN_HERE:
        if key in http:
            raise ConfigurationError(
                f"{path}: key 'http.{key}': written by `lienthong sandbox --write-only` "
                "with credentials of its own; leave it out"
            )


def _link_token_file(data: Mapping[str, Any]) -> str | None:
    """The file that holds the node's token at its parent (``link.transfer_token_file``)."""
    link = data.get("link")
    name = link.get("transfer_token_file") if isinstance(link, Mapping) else None
    return name if isinstance(name, str) else None


def _kept(path: Path, make: Callable[[], str]) -> str:
    """The secret in ``path``, made and written (mode 0600) if there is none yet."""
    if path.exists():
        found = path.read_text(encoding="utf-8").strip()
        if found:
            return found
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    path.touch(mode=0o600)
    path.write_text(value, encoding="utf-8")
    return value


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _credentials(
    folder: Path, node: SandboxNode, topology: Topology, children: Mapping[str, str]
) -> str:
    """The node's [http.clients], [http.links] and [http.operators] tables; the tokens
    themselves stay in files under ``folder/<node id>/``, the node file keeps their SHA-256."""
    home = folder / node.id
    lines = ["", f"# HTTP credentials: written by `lienthong sandbox --write-only`; in {node.id}/"]
    for agency in (a for a in topology.agencies if a.home_node == node.id):
        organ = agency.organ_id
        token = _kept(home / "rest" / f"{organ}.token", lambda: secrets.token_urlsafe(24))
        _kept(home / "sdk" / f"{organ}.secret", lambda: secrets.token_hex(24))
        lines += [
            f'[http.clients."{organ}"]',
            f'token_sha256 = "{_sha256(token)}"',
            f'systemid = "{organ}"',
            f'hmac_secret_file = "{node.id}/sdk/{organ}.secret"',
            f'organs = ["{organ}"]',
            "",
        ]
    for child, token in children.items():
        lines += [f'[http.links."{child}"]', f'token_sha256 = "{_sha256(token)}"', ""]
    operator = _kept(home / "operator.token", lambda: secrets.token_urlsafe(24))
    lines += ["[http.operators.operator]", f'token_sha256 = "{_sha256(operator)}"', ""]
    return "\n".join(lines)


def _place_directory(configs: Mapping[str, NodeConfig], topology: Topology, pki: Path) -> None:
    """A copy of the signed directory where each node keeps it, if it has none: the root's
    copy (it may be newer than version 1), else version 1 signed now by the root's key."""
    root = configs[topology.root]
    if root.trust.directory.exists():
        wire = root.trust.directory.read_bytes()
    else:
        content = tomllib.loads((pki / "directory.toml").read_text(encoding="utf-8"))
        key = NodeKey.from_pem(root.node_id, root.trust.node_key.read_bytes())
        wire = sign_directory(content, key)
    for config in configs.values():
        if not config.trust.directory.exists():
            config.trust.directory.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(config.trust.directory, wire)
