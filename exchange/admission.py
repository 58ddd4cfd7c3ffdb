"""Admission: is this package well-formed, valid, signed, and signed by its sender?

``admit`` is a pure function of the bytes, the source's policy and the node's trust
settings. It runs the steps of DESIGN §3.1 and returns a frozen ``Package`` read only from
the verified document, or raises one ``SenderFault`` that says exactly what is wrong.
It is CPU-bound; the service runs it in a bounded worker pool, off the event loop.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from lxml import etree

from exchange import contract
from exchange.attachments import AttachmentLimits
from exchange.directory import Binder
from exchange.errors import Problem, SenderFault
from exchange.extract import attachment_files, build_package
from exchange.model import Level, Package
from exchange.pades import PdfSignature
from exchange.policy import VerificationPolicy
from exchange.trust import TrustStore
from exchange.verification import verify_signature
from exchange.xmlsafe import ParseLimits, check_size, parse

PdfCheck = Callable[[Iterable[tuple[str, bytes]], datetime], tuple[PdfSignature, ...]]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Admission:
    """What a node needs to judge a package, besides the package and its source."""

    trust: TrustStore
    binder: Binder
    parse_limits: ParseLimits = field(default_factory=ParseLimits)
    attachment_limits: AttachmentLimits = field(default_factory=AttachmentLimits)
    clock: Callable[[], datetime] = _now
    # reads the PAdES signatures of a package's attached PDFs (adapters/pades_pyhanko.py);
    # asked only for packages admitted below strict
    pdf_check: PdfCheck | None = None


@dataclass(frozen=True)
class Admitted:
    package: Package
    warnings: tuple[Problem, ...] = ()


def admit(data: bytes, policy: VerificationPolicy, ctx: Admission) -> Admitted:
    check_size(data, ctx.parse_limits)
    digest = hashlib.sha256(data).hexdigest()
    root = parse(data, ctx.parse_limits).getroot()
    kind, warnings = contract.enforce(root)
    try:
        verified = verify_signature(
            root, policy=policy, trust=ctx.trust, binder=ctx.binder, when=ctx.clock()
        )
    except SenderFault as fault:
        if not policy.quarantine_failures:
            raise
        package = build_package(
            root,
            kind=kind,
            digest=digest,
            size=len(data),
            level=Level.QUARANTINED,
            signer=None,
            notes=(f"held for an operator: {fault}",),
            limits=ctx.attachment_limits,
        )
        return Admitted(_with_pdf_signatures(package, root, ctx), tuple(warnings))
    package = build_package(
        verified.root,
        kind=contract.detect_kind(verified.root),
        digest=digest,
        size=len(data),
        level=verified.level,
        signer=verified.signer,
        notes=verified.notes,
        limits=ctx.attachment_limits,
    )
    return Admitted(_with_pdf_signatures(package, verified.root, ctx), tuple(warnings))


def _with_pdf_signatures(package: Package, root: etree._Element, ctx: Admission) -> Package:
    """Below strict, the PDF signatures are what an auditor can still lean on: read them."""
    if ctx.pdf_check is None or package.level is Level.STRICT or not package.attachments:
        return package
    found = ctx.pdf_check(attachment_files(package, root, ctx.attachment_limits), ctx.clock())
    return replace(package, pdf_signatures=found)
