"""Admission of a package read as a stream: ``admission.admit``'s verdict for the same
bytes, in memory that does not grow with the package.

One pass (``stream_scan``) reads the bytes; then the steps of ``admit`` run in its
order on what the pass kept: the contract (the compiled XSD and the rule pass) on the
skeleton, whose attachment payloads are tiny stand-ins that keep the schema's verdict;
the signature (``stream_verify``); and the Package, read from the skeleton, with each
attachment described from the digest of its bytes as they streamed (a ZIP wrapper from
a temporary file, since its directory is at its end). Errors are the same, with the
same codes; a malformed document fails during the pass.

Not done here: reading the PAdES signatures of attached PDFs (``Admission.pdf_check``)
needs their bytes, which a stream does not keep. Below strict, such a package is
admitted with a warning that says so; the PDFs can be checked where they are stored.
"""

from __future__ import annotations

from typing import BinaryIO

from lxml import etree

from exchange import contract
from exchange.admission import Admission, Admitted
from exchange.attachments import Decoded, describe
from exchange.errors import Problem, SenderFault
from exchange.extract import build_package
from exchange.model import Level, Package
from exchange.policy import VerificationPolicy
from exchange.stream_scan import Scanned, scan
from exchange.stream_verify import verify_scanned

PDF_UNCHECKED = Problem(
    None,
    "/edXML/AttachmentEncoded",
    "the PDF signatures of the attachments were not read: the package was admitted as a "
    "stream, which does not keep attachment bytes",
    code="attachment.pdf_unchecked",
    severity="warning",
)


def admit_stream(
    stream: BinaryIO, size: int, policy: VerificationPolicy, ctx: Admission
) -> Admitted:
    """Admit the ``size`` bytes read from ``stream`` (``ctx.parse_limits.max_bytes`` caps
    them), or raise the ``SenderFault`` that ``admit`` raises for the same bytes."""
    scanned = scan(stream, ctx.parse_limits, size=size, attachments=True)
    try:
        return _judge(scanned, policy, ctx)
    finally:
        scanned.close()


def _judge(scanned: Scanned, policy: VerificationPolicy, ctx: Admission) -> Admitted:
    root = scanned.skeleton
    kind, warnings = contract.enforce(root)

    def described(payload: etree._Element | None, label: str) -> Decoded:
        stream = scanned.attachments.get(payload) if payload is not None else None
        if stream is None:
            return describe(b"", label, ctx.attachment_limits)
        return stream.describe(label, ctx.attachment_limits)

    common = {
        "digest": scanned.sha256,
        "size": scanned.size,
        "limits": ctx.attachment_limits,
        "describe": described,
    }
    try:
        level, signer, notes = verify_scanned(
            scanned, policy=policy, trust=ctx.trust, binder=ctx.binder, when=ctx.clock()
        )
    except SenderFault as fault:
        if not policy.quarantine_failures:
            raise
        package = build_package(
            root,
            kind=kind,
            level=Level.QUARANTINED,
            signer=None,
            notes=(f"held for an operator: {fault}",),
            **common,  # type: ignore[arg-type]
        )
        return Admitted(package, _with_pdf_warning(package, warnings, ctx))
    package = build_package(
        root,
        kind=contract.detect_kind(root),
        level=level,
        signer=signer,
        notes=notes,
        **common,  # type: ignore[arg-type]
    )
    return Admitted(package, _with_pdf_warning(package, warnings, ctx))


def _with_pdf_warning(
    package: Package, warnings: list[Problem], ctx: Admission
) -> tuple[Problem, ...]:
    if ctx.pdf_check is None or package.level is Level.STRICT or not package.attachments:
        return tuple(warnings)
    return (*warnings, PDF_UNCHECKED)
