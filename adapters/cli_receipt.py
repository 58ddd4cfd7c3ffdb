"""``lienthong verify-receipt``: check a node's signed delivery receipt offline.

The node certificates come from a folder (``--node-certs``, ``<node id>.pem``) or from a
node file's ``trust.node_certs`` (``--config``). Exit 0 when the receipt verifies (and, with
``--package``, covers those exact bytes), 1 when it is refused, 2 when a file cannot be read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cryptography import x509

from adapters.config_files import load_node_certs, load_node_config
from exchange.errors import ConfigurationError, ReceiptInvalid, ReceiptPackageMismatch
from exchange.receipt import VerifiedReceipt, check_against_package, read_receipt
from exchange.xmlsafe import ParseLimits

EXIT_OK, EXIT_REFUSED = 0, 1


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the {what}: {exc.strerror}") from exc


def _node_certs(
    args: argparse.Namespace,
) -> dict[str, x509.Certificate | tuple[x509.Certificate, ...]]:
    folder = (
        Path(args.node_certs) if args.node_certs else load_node_config(args.config).trust.node_certs
    )
    certs = load_node_certs(folder)
    if not certs:
        raise ConfigurationError(f"{folder}: holds no node certificates (<node id>.pem)")
    return certs


def summary(path: str, verified: VerifiedReceipt, package: str | None) -> str:
    receipt = verified.receipt
    first, *others = receipt.recipients
    lines = [
        f"{path}: verified: node {receipt.node} delivered message {receipt.message_id} "
        f"to {len(receipt.recipients)} agency(ies)",
        f"  message id      {receipt.message_id}",
        f"  document id     {receipt.document_id or '(none)'}",
        f"  sender          {receipt.sender}",
        f"  level           {receipt.level.value}",
        f"  package sha256  {receipt.package_sha256}",
        f"  issued at       {receipt.issued_at.isoformat()}",
        f"  recipients      {first.organ_id}  delivered {first.delivered_at.isoformat()}",
        *(
            f"                  {item.organ_id}  delivered {item.delivered_at.isoformat()}"
            for item in others
        ),
        f"  signed by       {verified.signer_subject}",
        f"  certificate     sha256 {verified.signer_fingerprint}",
    ]
    if package is not None:
        lines.append(f"  package         {package}: the exact bytes the receipt covers")
    return "\n".join(lines)


def cmd_verify_receipt(args: argparse.Namespace) -> int:
    certs = _node_certs(args)
    data = _read(args.receipt, "receipt")
    package = _read(args.package, "package") if args.package else None
    try:
        verified = read_receipt(data, certs, limits=ParseLimits(max_bytes=args.max_bytes))
        if package is not None:
            check_against_package(verified.receipt, package)
    except (ReceiptInvalid, ReceiptPackageMismatch) as exc:
        print(f"{args.receipt}: refused [{exc.code}] {exc.message}")
        return EXIT_REFUSED
    print(summary(args.receipt, verified, args.package))
    return EXIT_OK


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "verify-receipt", help="check a node's signed delivery receipt offline, and what it says"
    )
    p.add_argument("receipt", metavar="RECEIPT", help="the receipt (XML)")
    certs = p.add_mutually_exclusive_group(required=True)
    certs.add_argument("--node-certs", metavar="DIR", help="node certificates, <node id>.pem")
    certs.add_argument("--config", metavar="NODE.toml", help="use this node's trust.node_certs")
    p.add_argument("--package", metavar="FILE", help="also check these are the bytes it covers")
    p.set_defaults(func=cmd_verify_receipt)
