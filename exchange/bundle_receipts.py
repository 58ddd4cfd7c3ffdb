"""The receipts in an evidence bundle: each DELIVERED event's signed receipt, read with the
certificate pinned for the node it names (exchange/receipt.py), and held against the
event that carries it and the package the bundle holds.

A receipt that verifies but says another message, another node, other recipients, or a
PackageSha256 other than the package's, is a problem like one that does not verify.
"""

from __future__ import annotations

from collections.abc import Mapping

from cryptography import x509

from exchange.bundle import ReceiptCheck
from exchange.errors import ReceiptInvalid
from exchange.evidence import Event
from exchange.receipt import read_receipt


def _names(value: object) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


def receipt_checker(
    node_certs: Mapping[str, x509.Certificate | tuple[x509.Certificate, ...]],
) -> ReceiptCheck:
    """The receipt hook of ``verify_bundle``, pinning ``node_certs`` (by node id)."""

    def check(data: bytes, event: Event, package_sha256: str | None) -> list[str]:
        try:
            receipt = read_receipt(data, node_certs).receipt
        except ReceiptInvalid as exc:
            return [exc.message]
        problems = []
        if receipt.message_id != event.message_id:
            problems.append(f"it is the receipt of message {receipt.message_id}")
        if receipt.node != event.node:
            problems.append(f"node {receipt.node} signed it, not node {event.node}")
        covered = package_sha256 or event.digest
        if covered is not None and receipt.package_sha256 != covered:
            problems.append(
                f"its PackageSha256 {receipt.package_sha256} is not the package's {covered}"
            )
        named, recorded = set(receipt.organ_ids), _names(event.detail.get("recipients"))
        if named != recorded:
            problems.append(
                f"it names recipients {', '.join(sorted(named))}, the entry "
                f"{', '.join(sorted(recorded)) or 'none'}"
            )
        return problems

    return check
