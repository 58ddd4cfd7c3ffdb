"""The CRLs in an evidence bundle: each one's bytes against the SHA-256 the exporting node
gave it, and whether it was current (between its thisUpdate and nextUpdate) when each
package of the document was accepted at that node.

The node exports the CRLs its configuration names at export time; the summary says for
each whether it was current at admission, so a CRL replaced since shows as such. Whether
the signer's certificate was revoked is checked with the package and these CRLs by
``lienthong verify`` (docs/evidence.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509

from exchange.bundle_format import Bundle
from exchange.evidence import Event, EventKind
from exchange.evidence_summary import when


def _load(data: bytes) -> x509.CertificateRevocationList:
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_crl(data)
    return x509.load_der_x509_crl(data)


def crl_lines(bundle: Bundle, events: Sequence[Event]) -> tuple[list[str], list[str]]:
    """(problems, summary lines) of the bundle's CRLs, against the ACCEPTED ``events``."""
    problems: list[str] = []
    lines: list[str] = []
    admitted = [e for e in events if e.kind is EventKind.ACCEPTED and e.node == bundle.node]
    for crl_file in bundle.crls:
        what = f"CRL {crl_file.name}"
        if hashlib.sha256(crl_file.data).hexdigest() != crl_file.sha256:
            problems.append(f"{what}: its bytes do not match its SHA-256 {crl_file.sha256}")
        try:
            crl = _load(crl_file.data)
        except ValueError:
            problems.append(f"{what}: not a CRL (PEM or DER)")
            continue
        start, end = crl.last_update_utc, crl.next_update_utc
        until = when(end) if end is not None else "no next update"
        current = [e for e in admitted if start <= e.at and (end is None or e.at <= end)]
        stale = [e.message_id for e in admitted if e not in current]
        verdict = (
            f"; not current when message(s) {', '.join(map(str, stale))} were accepted"
            if stale
            else (
                f"; current when all {len(admitted)} package(s) were accepted" if admitted else ""
            )
        )
        lines.append(f"{what}: of {crl.issuer.rfc4514_string()}, {when(start)} to {until}{verdict}")
    if not bundle.crls:
        lines.append("no CRL in the bundle (none configured at the node)")
    return problems, lines
