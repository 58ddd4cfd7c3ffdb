"""``lienthong directory sign | show``: the signed directory the root publishes."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from adapters.config_files import load_node_config, load_node_key, load_peer_keys
from adapters.directory_file import next_path
from adapters.durable import write_atomically
from exchange.directory_doc import newer, open_directory, sign_directory
from exchange.errors import ConfigurationError, DirectoryRefused, DirectoryStale

EXIT_OK, EXIT_REFUSED = 0, 1


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign directory.toml with the root's node key, as the root's next directory."""
    config = load_node_config(args.config)
    source = Path(args.directory)
    try:
        content = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"{source}: cannot read the directory: {exc}") from exc
    signer = config.trust.directory_signer
    if args.output is None and signer != config.node_id:
        raise ConfigurationError(
            f"{config.source_file}: node {config.node_id} does not sign directories "
            f"(trust.directory_signer is {signer!r}); sign with the root's node file"
        )
    wire = sign_directory(content, load_node_key(config))
    if args.output is None and config.trust.directory.exists():
        keys, me = load_peer_keys(config), config.node_id
        try:
            kept = open_directory(config.trust.directory.read_bytes(), keys, me)
        except DirectoryRefused:
            kept = None  # the root's own copy does not open: nothing to compare with
        try:
            newer(kept, open_directory(wire, keys, me))
        except DirectoryStale as exc:
            raise ConfigurationError(f"{source}: raise its version: {exc.message}") from exc
    out = Path(args.output) if args.output else next_path(config.trust.directory)
    write_atomically(out, wire)
    print(
        f"{out}: directory v{content.get('version')} signed by node {config.node_id}, "
        f"{len(content.get('agency', []))} agencies, {len(content.get('node', []))} nodes"
    )
    if args.output is None:
        every = config.directory_check_s
        print(f"node {config.node_id} takes it and sends it down its links within {every:g} s")
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
    s = inner.add_parser("sign", help="sign directory.toml as the root's next directory")
    s.add_argument("--config", required=True, help="the root node's file (its key signs)")
    s.add_argument("directory", help="the directory to sign (TOML); raise its version first")
    s.add_argument(
        "-o", "--output", help="write it here instead (default: the root's next directory)"
    )
    s.set_defaults(func=cmd_sign)
    s = inner.add_parser("show", help="check a signed directory and say what it holds")
    s.add_argument("--config", required=True, help="a node file: its keys and signer check it")
    s.add_argument("file", nargs="?", help="the signed directory (default: the node's own)")
    s.set_defaults(func=cmd_show)
