"""Signed test documents for the tree benchmarks: any sender, any recipients.

The example new document is readdressed (From, To, the DocumentId's prefix), padded to a
size with bench/admission.py's incompressible attachment, and signed by the sender's key;
``numbered`` then gives each copy its own DocumentId (a node answers "duplicate" to the
same document twice) and signs it again.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.admission import make_package
from exchange.contract import schema_dir
from exchange.signing import SigningKey, sign

_NUMBER = b"125/UBND-VP</edXML:DocumentId>"


def addressed(sender: str, recipients: Sequence[str]) -> bytes:
    """The example new document from ``sender`` to ``recipients`` (OrganId only)."""
    data = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    data = data.replace(b"000.00.00.G22", sender.encode())  # From, and the DocumentId
    start = data.index(b"<edXML:To>")
    end = data.rindex(b"</edXML:To>") + len(b"</edXML:To>")
    to = "".join(f"<edXML:To><edXML:OrganId>{r}</edXML:OrganId></edXML:To>" for r in recipients)
    return data[:start] + to.encode() + data[end:]


def signed_document(
    sender: str, recipients: Sequence[str], key: SigningKey, size: int = 10 * 1024
) -> bytes:
    """Signed, with an attachment that brings it to about ``size`` bytes in all (never
    below what the To list alone takes)."""
    return make_package(size, key, addressed(sender, recipients))


def numbered(template: bytes, key: SigningKey, count: int, seed: str) -> list[bytes]:
    """``count`` distinct signed documents: the template with DocumentIds ``<seed><i>``."""
    if _NUMBER not in template:
        raise ValueError("the template has no DocumentId number to replace")
    return [
        sign(template.replace(_NUMBER, f"{seed}{i}/UBND-VP</edXML:DocumentId>".encode()), key)
        for i in range(count)
    ]
