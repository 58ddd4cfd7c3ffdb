"""PAdES signatures found in a package's PDF attachments: the finding and its record.

The envelope's XML-DSig cannot be the trust anchor in today's traffic; the legally
relevant signatures are those inside the attached PDFs (reference/edxml.md §2.5, §8.4).
A node reports them for packages admitted below ``strict`` (legacy, unsigned,
quarantined), so that an operator and the recipient see who signed what. Reading the PDFs
needs pyHanko, which loads aiohttp, so that work is in ``adapters/pades_pyhanko.py``;
what it finds is a plain value, here, for the evidence log and receipts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class PdfSignature:
    """One signature in one attached PDF, or one PDF that could not be read."""

    attachment: str  # the attachment's file name
    signer: str  # the signer certificate's subject, RFC 4514 (CN first); "" when unknown
    signed_at: datetime | None  # the signing time the signature claims; not proven
    valid: bool  # the signed bytes are intact and the signature verifies
    trusted: bool  # the signer chains to one of the node's CA roots (judged once it verifies)
    reason: str  # why it is not valid (or not trusted); "" when it is both


def to_record(sig: PdfSignature) -> dict[str, Any]:
    """The finding as plain JSON values."""
    return {
        "attachment": sig.attachment,
        "signer": sig.signer,
        "signed_at": sig.signed_at.isoformat() if sig.signed_at is not None else None,
        "valid": sig.valid,
        "trusted": sig.trusted,
        "reason": sig.reason,
    }


def from_record(record: Mapping[str, Any]) -> PdfSignature:
    """A finding read back from ``to_record``'s form. Records also arrive from other
    nodes: a field of the wrong type is a TypeError, a time that is not ISO 8601 a
    ValueError, each naming the field."""
    if not isinstance(record, Mapping):
        raise TypeError("a PDF signature record must be an object")

    def field(name: str, kind: type) -> Any:
        value = record.get(name)
        if not isinstance(value, kind):
            raise TypeError(f"PDF signature record: {name} must be {kind.__name__}")
        return value

    signed_at = record.get("signed_at")
    if signed_at is not None and not isinstance(signed_at, str):
        raise TypeError("PDF signature record: signed_at must be an ISO 8601 time or null")
    try:
        when = datetime.fromisoformat(signed_at) if signed_at is not None else None
    except ValueError as exc:
        raise ValueError(f"PDF signature record: signed_at {signed_at!r} is not ISO 8601") from exc
    return PdfSignature(
        attachment=field("attachment", str),
        signer=field("signer", str),
        signed_at=when,
        valid=field("valid", bool),
        trusted=field("trusted", bool),
        reason=field("reason", str),
    )
