"""``lienthong evidence``: a document's evidence bundle, exported from a node's store and
checked offline; and the checkpoints a parent keeps for a child, for the auditor.

    lienthong evidence --config node.toml DOCUMENT_ID -o FILE [--checkpoints FILE]
    lienthong evidence --verify FILE [--node-certs DIR | --config node.toml] [--checkpoints FILE]
    lienthong evidence checkpoints --config parent.toml --node CHILD -o FILE [--since TIME]

Exit codes: 0 exported, or verified; 1 refused (one line per problem) or nothing known
about the document; 2 the command was used wrongly or a file could not be read.
docs/evidence.md says what a bundle holds and proves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from adapters.config_files import (
    load_node_certs,
    load_node_config,
    load_node_key,
    load_peer_keys,
)
from adapters.durable import write_atomically
from adapters.service import open_store
from exchange.bundle import build_bundle, verify_bundle
from exchange.bundle_receipts import receipt_checker
from exchange.checkpoint import make_checkpoint_file, open_checkpoint_file
from exchange.envelope import KeyRing, PeerKey
from exchange.errors import ConfigurationError
from exchange.evidence_export import document_segment, kept_checkpoints, package_copies
from exchange.trust import fingerprint

EXIT_OK, EXIT_REFUSED = 0, 1
CHECKPOINTS = "checkpoints"  # the word that asks for a parent's checkpoints of a child


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the {what}: {exc.strerror}") from exc


def _write(path: str, data: bytes) -> None:
    try:
        write_atomically(Path(path), data)
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot write: {exc.strerror}") from exc


def _usage(message: str) -> ConfigurationError:
    return ConfigurationError(f"evidence: {message} (see lienthong evidence --help)")


def node_keys_of(
    certs: Mapping[str, x509.Certificate | tuple[x509.Certificate, ...]],
) -> dict[str, PeerKey]:
    """The node keys (ECDSA or Ed25519) of pinned node certificates, by node id; each
    certificate's key, for a node that rotated its key."""
    keys: dict[str, PeerKey] = {}
    for node, pinned in certs.items():
        ring = tuple(
            (fingerprint(cert), key)
            for cert in (pinned if isinstance(pinned, tuple) else (pinned,))
            if isinstance(key := cert.public_key(), ec.EllipticCurvePublicKey)
            or isinstance(key, ed25519.Ed25519PublicKey)
        )
        if ring:
            keys[node] = KeyRing(ring)
    return keys


def cmd_export(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    parent = None
    if args.checkpoints:
        data = _read(args.checkpoints, "checkpoint file")
        _, node, _ = open_checkpoint_file(data, load_peer_keys(config))
        if node != config.node_id:
            raise _usage(
                f"{args.checkpoints} holds node {node}'s checkpoints, not {config.node_id}'s"
            )
        parent = json.loads(data)
    crls = [(path.name, _read(path, "CRL")) for path in config.trust.crls]

    async def go() -> int:
        store = open_store(config)
        try:
            await store.migrate()
            entries = await document_segment(store, args.document_id)
            packages, missing = await package_copies(
                store, entries, args.document_id, config.node_id
            )
        finally:
            await store.close()
        if not entries:
            print(f"{args.document_id}: no evidence at node {config.node_id}")
            return EXIT_REFUSED
        bundle = build_bundle(
            document_id=args.document_id,
            node=config.node_id,
            exported_at=datetime.now(UTC),
            entries=entries,
            packages=packages,
            crls=crls,
            parent_checkpoints=parent,
        )
        _write(args.output, bundle)
        chains = sorted({e.chain for e in entries})
        print(
            f"{args.output}: evidence of document {args.document_id} at node {config.node_id}: "
            f"{len(entries)} entries of chain {', '.join(chains)}, {len(packages)} package(s), "
            f"{len(crls)} CRL(s)" + (", with the parent's checkpoints" if parent else "")
        )
        for message_id in missing:
            print(f"  the bytes of message {message_id} are no longer in the store")
        return EXIT_OK

    return asyncio.run(go())


def cmd_verify(args: argparse.Namespace) -> int:
    if args.node_certs:
        folder = Path(args.node_certs)
    elif args.config:
        folder = load_node_config(args.config).trust.node_certs
    else:
        raise _usage("--verify needs the node certificates: --node-certs DIR or --config FILE")
    certs = load_node_certs(folder)
    keys = node_keys_of(certs)
    records: list[dict[str, object]] = []
    if args.checkpoints:
        keeper, node, records = open_checkpoint_file(
            _read(args.checkpoints, "checkpoint file"), keys
        )
        if keeper == node:
            print(
                f"{args.checkpoints}: refused: signed by node {node} itself; the checkpoints "
                "that count are those its parent keeps"
            )
            return EXIT_REFUSED
        print(
            f"{args.checkpoints}: {len(records)} checkpoint(s) of node {node} kept by node {keeper}"
        )
    verdict = verify_bundle(
        _read(args.verify, "evidence bundle"),
        keys,
        records,
        check_receipt=receipt_checker(certs),
    )
    for line in verdict.summary:
        print(line)
    for problem in verdict.problems:
        print(f"problem: {problem}")
    if verdict.ok:
        print(f"{args.verify}: verified")
        return EXIT_OK
    print(f"{args.verify}: refused, {len(verdict.problems)} problem(s)")
    return EXIT_REFUSED


def cmd_checkpoints(args: argparse.Namespace) -> int:
    config = load_node_config(args.config)
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since)
        except ValueError as exc:
            raise _usage(f"--since {args.since!r} is not an ISO 8601 time") from exc
        if since.utcoffset() is None:
            raise _usage(f"--since {args.since!r} needs a time zone (+07:00, Z)")
    key = load_node_key(config)

    async def go() -> list[dict[str, object]]:
        store = open_store(config)
        try:
            await store.migrate()
            return await kept_checkpoints(store, args.node, since)
        finally:
            await store.close()

    records = asyncio.run(go())
    _write(args.output, make_checkpoint_file(key, args.node, records, datetime.now(UTC)))
    print(
        f"{args.output}: {len(records)} checkpoint(s) of node {args.node} kept at node "
        f"{config.node_id}"
    )
    return EXIT_OK


def cmd_evidence(args: argparse.Namespace) -> int:
    """One command, three uses, told apart by --verify and the word ``checkpoints``."""
    if args.verify:
        if args.document_id or args.output or args.node:
            raise _usage("--verify FILE takes no DOCUMENT_ID, -o or --node")
        return cmd_verify(args)
    if args.node_certs:
        raise _usage("--node-certs goes with --verify")
    if not args.document_id:
        raise _usage("give a DOCUMENT_ID to export, --verify FILE, or checkpoints --node CHILD")
    if not args.config or not args.output:
        raise _usage("exporting needs --config FILE and -o FILE")
    if args.document_id == CHECKPOINTS:
        if not args.node:
            raise _usage("evidence checkpoints needs --node CHILD")
        return cmd_checkpoints(args)
    if args.node or args.since:
        raise _usage("--node and --since go with 'evidence checkpoints'")
    return cmd_export(args)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evidence",
        help="export a document's evidence bundle, verify one, or a child's checkpoints",
        usage=(
            "\n  lienthong evidence --config NODE.toml DOCUMENT_ID -o FILE [--checkpoints FILE]"
            "\n  lienthong evidence --verify FILE [--node-certs DIR | --config NODE.toml] "
            "[--checkpoints FILE]"
            "\n  lienthong evidence checkpoints --config PARENT.toml --node CHILD -o FILE "
            "[--since TIME]"
        ),
    )
    p.add_argument(
        "document_id", nargs="?", metavar="DOCUMENT_ID", help="the document (or: checkpoints)"
    )
    p.add_argument(
        "--config", metavar="NODE.toml", help="the node file: its store, its node certificates"
    )
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the bundle or file")
    p.add_argument("--verify", metavar="FILE", help="check an evidence bundle offline")
    p.add_argument("--node-certs", metavar="DIR", help="node certificates, <node id>.pem")
    p.add_argument(
        "--checkpoints",
        metavar="FILE",
        help="a parent's checkpoint file: embedded when exporting, checked against when verifying",
    )
    p.add_argument("--node", metavar="CHILD", help="the child whose checkpoints to export")
    p.add_argument("--since", metavar="TIME", help="only checkpoints recorded since (ISO 8601)")
    p.set_defaults(func=cmd_evidence)
