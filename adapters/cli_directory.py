"""``lienthong directory sign | show``: the signed directory the root publishes."""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from pathlib import Path

from adapters.config_files import load_node_config, load_node_key, load_peer_keys
from adapters.directory_file import DirectoryFile
from exchange.directory_doc import open_directory, sign_directory
from exchange.errors import ConfigurationError, DirectoryRefused

EXIT_OK, EXIT_REFUSED = 0, 1


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign directory.toml with the node key of ``--config`` (the root's)."""
    config = load_node_config(args.config)
    source = Path(args.directory)
    try:
        content = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{source}: cannot read the directory: {exc}") from exc
    wire = sign_directory(content, load_node_key(config))
    out = Path(args.output) if args.output else config.trust.directory
    asyncio.run(DirectoryFile(out).write(wire))
    print(
        f"{out}: directory v{content.get('version')} signed by node {config.node_id}, "
        f"{len(content.get('agency', []))} agencies, {len(content.get('node', []))} nodes"
    )
    if out == config.trust.directory:
        print(
            f"node {config.node_id} sends it down its links within {config.directory_check_s:g} s"
        )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Check a signed directory with a node's keys and signer, and say what it holds."""
    config = load_node_config(args.config)
    path = Path(args.file) if args.file else config.trust.directory
    signer = config.trust.directory_signer
    if signer is None:
        raise ConfigurationError(f"{config.source_file}: key 'trust.directory_signer' is not set")
    try:
        signed = open_directory(path.read_bytes(), load_peer_keys(config), signer)
    except DirectoryRefused as exc:
        print(f"{path}: REFUSED [{exc.code}] {exc.message}")
        return EXIT_REFUSED
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror}") from exc
    directory = signed.directory
    print(
        f"{path}: directory v{signed.version}, signed by {signed.signer} at {signed.issued_at}; "
        f"{len(directory.entries)} agencies, {len(directory.nodes)} nodes, "
        f"{len(directory.redirects)} old codes; sha256 {signed.sha256[:16]}…"
    )
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("directory", help="the signed agency directory")
    inner = p.add_subparsers(dest="directory_command", required=True)
    s = inner.add_parser("sign", help="sign directory.toml with the root node's key")
    s.add_argument("--config", required=True, help="the root node's file (its key signs)")
    s.add_argument("directory", help="the directory to sign (TOML)")
    s.add_argument("-o", "--output", help="where to write it (default: the node's directory)")
    s.set_defaults(func=cmd_sign)
    s = inner.add_parser("show", help="check a signed directory and say what it holds")
    s.add_argument("--config", required=True, help="a node file: its keys and signer check it")
    s.add_argument("file", nargs="?", help="the signed directory (default: the node's own)")
    s.set_defaults(func=cmd_show)
