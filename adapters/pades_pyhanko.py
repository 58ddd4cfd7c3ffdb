"""Finding and checking the PAdES signatures in attached PDFs, with pyHanko.

pyHanko's validation modules import aiohttp (for the OCSP, CRL and AIA fetchers), so
this reader lives in adapters/, not in the core. Nothing is fetched: the validation
context has ``allow_fetching=False`` and only the node's CA roots, so revocation is
judged from what the PDF itself carries ("soft-fail": unknown is not refused) and a
chain is built only from the certificates in the signature. The work is bounded (a size
cap per PDF, a number of signatures per PDF), and a PDF that cannot be read is a finding,
never an exception: these files come from outside.

Synchronous and CPU-bound: call it from a worker thread, not on the event loop.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation import EmbeddedPdfSignature, async_validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext

from exchange.pades import PdfSignature

PDF_MAGIC = b"%PDF"
MAX_PDF_BYTES = 32 * 1024 * 1024
MAX_SIGNATURES_PER_PDF = 20

# pyHanko logs each failed check (no chain, a suspicious later revision) with a traceback
# through the standard library, which the node does not route: plain text on stderr, per
# signature. What it found is in the PdfSignature; its own channel says only the fatal.
for _channel in ("pyhanko", "pyhanko_certvalidator"):
    logging.getLogger(_channel).setLevel(logging.CRITICAL)


def pdf_signatures(
    attachments: Iterable[tuple[str, bytes]],
    roots: Sequence[x509.Certificate],
    *,
    now: datetime,
    max_bytes: int = MAX_PDF_BYTES,
    max_signatures: int = MAX_SIGNATURES_PER_PDF,
) -> tuple[PdfSignature, ...]:
    """The signatures in each attached PDF (a file that starts with ``%PDF``), checked at
    ``now`` against ``roots``; other files are passed over. An unsigned PDF gives no entry;
    a PDF over ``max_bytes``, one that cannot be read, and the signatures past
    ``max_signatures`` each give one entry that says so (not valid, not trusted)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError("pdf_signatures blocks: call it from a worker thread")
    # a list, even empty: None would make pyHanko fall back to the system's TLS roots
    trust_roots = [asn1_x509.Certificate.load(_der(root)) for root in roots]
    return asyncio.run(_check_all(attachments, trust_roots, now, max_bytes, max_signatures))


async def _check_all(
    attachments: Iterable[tuple[str, bytes]],
    roots: list[asn1_x509.Certificate],
    now: datetime,
    max_bytes: int,
    max_signatures: int,
) -> tuple[PdfSignature, ...]:
    found: list[PdfSignature] = []
    for name, data in attachments:
        if not data.startswith(PDF_MAGIC):
            continue
        if len(data) > max_bytes:
            reason = f"not checked: the PDF is {len(data)} bytes, over the cap of {max_bytes}"
            found.append(_not_checked(name, reason))
            continue
        try:
            reader = PdfFileReader(io.BytesIO(data), strict=False)
            fields = _signature_fields(reader)
        except Exception as exc:  # noqa: BLE001 - any failure to read a foreign PDF is a finding
            found.append(_not_checked(name, f"not a readable PDF: {_describe(exc)}"))
            continue
        for fq_name, field in fields[:max_signatures]:
            # a context per signature, as pyHanko keeps what it validated in its context
            context = ValidationContext(trust_roots=roots, allow_fetching=False, moment=now)
            found.append(await _check_one(name, reader, fq_name, field, context))
        if len(fields) > max_signatures:
            extra = len(fields) - max_signatures
            reason = (
                f"not checked: {extra} more signature(s) past the limit of {max_signatures} per PDF"
            )
            found.append(_not_checked(name, reason))
    return tuple(found)


def _signature_fields(reader: PdfFileReader) -> list[tuple[str, generic.DictionaryObject]]:
    """The filled signature fields, document timestamps left out (they sign for no one).

    Read without parsing their CMS, so that the cap on signatures bounds that work."""
    found = []
    for fq_name, value, field in enumerate_sig_fields(reader, filled_status=True):
        if value.get_object().get("/Type") != "/DocTimeStamp":
            found.append((fq_name, field))
    return found


async def _check_one(
    name: str,
    reader: PdfFileReader,
    fq_name: str,
    field: generic.DictionaryObject,
    context: ValidationContext,
) -> PdfSignature:
    try:
        embedded = EmbeddedPdfSignature(reader, field, fq_name)
    except Exception as exc:  # noqa: BLE001 - a malformed signature is a finding
        return _not_checked(name, f"the signature {fq_name!r} could not be read: {_describe(exc)}")
    try:
        status = await async_validate_pdf_signature(embedded, context)
    except Exception as exc:  # noqa: BLE001 - a malformed signature is a finding
        return PdfSignature(
            attachment=name,
            signer=_signer_of(embedded),
            signed_at=_claimed_time(embedded),
            valid=False,
            trusted=False,
            reason=f"the signature could not be checked: {_describe(exc)}",
        )
    problem = _problem(status)
    return PdfSignature(
        attachment=name,
        signer=_subject(status.signing_cert),
        signed_at=status.signer_reported_dt,
        valid=problem is None,
        trusted=status.trusted,
        reason=problem or _trust_problem(status),
    )


def _problem(status: PdfSignatureStatus) -> str | None:
    """Why the signed file cannot be relied upon as it is, or None."""
    if not status.intact:
        return "integrity: the signed bytes were changed after signing (digest mismatch)"
    if not status.valid:
        return "the signature value does not verify with the signer's certificate"
    if status.docmdp_ok is False:
        return (
            "integrity: the file was changed after signing beyond what the signature allows "
            f"(coverage: {_words(status.coverage)}; changes: {_words(status.modification_level)})"
        )
    return None


def _trust_problem(status: PdfSignatureStatus) -> str:
    if status.trusted:
        return ""
    indication = status.trust_problem_indic
    return f"untrusted: the signer does not chain to a configured CA ({_words(indication)})"


def _words(value: object) -> str:
    """An enum member's name as words (pyHanko's indications are enums)."""
    name = getattr(value, "name", None)
    return name.lower().replace("_", " ") if isinstance(name, str) else "unknown"


def _not_checked(name: str, reason: str) -> PdfSignature:
    return PdfSignature(name, signer="", signed_at=None, valid=False, trusted=False, reason=reason)


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _signer_of(embedded: EmbeddedPdfSignature) -> str:
    try:
        cert = embedded.signer_cert
    except Exception:  # noqa: BLE001 - the signature may not even name a certificate
        return ""
    return _subject(cert)


def _claimed_time(embedded: EmbeddedPdfSignature) -> datetime | None:
    try:
        return embedded.self_reported_timestamp
    except Exception:  # noqa: BLE001 - a malformed time is no time
        return None


def _subject(cert: asn1_x509.Certificate) -> str:
    """RFC 4514, as the rest of the node writes subjects; asn1crypto's reading when
    cryptography refuses the certificate (it is stricter about encodings)."""
    try:
        return x509.load_der_x509_certificate(cert.dump()).subject.rfc4514_string()
    except ValueError:
        try:
            return str(cert.subject.human_friendly)
        except Exception:  # noqa: BLE001 - a subject that cannot be read is no name
            return ""


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pdf_check_for(
    roots: Sequence[x509.Certificate],
) -> Callable[[Iterable[tuple[str, bytes]], datetime], tuple[PdfSignature, ...]]:
    """Admission's ``pdf_check`` (exchange/admission.py): the node's roots, no fetching."""

    def check(files: Iterable[tuple[str, bytes]], now: datetime) -> tuple[PdfSignature, ...]:
        return pdf_signatures(files, roots, now=now)

    return check
