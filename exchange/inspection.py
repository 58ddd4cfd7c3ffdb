"""``lienthong inspect``: read any edXML file a person hands us, and say what it is.

Admission is strict; inspection is forgiving, and says how. It reads past junk before
the XML declaration and recovers from namespace mistakes that real SDK files carry,
and it notes each such liberty. Nothing here is trusted: the summary is read from the
document as found, unless a trust store is given and the signature verifies, in which
case it is read from the verified document.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.verifier import SignatureConfiguration, XMLVerifier

from exchange import contract
from exchange.attachments import AttachmentLimits
from exchange.directory import Binder
from exchange.errors import (
    ContractViolation,
    LienthongError,
    MalformedXml,
    Problem,
    SenderFault,
)
from exchange.extract import build_package
from exchange.model import Kind, Level, Package
from exchange.policy import VerificationPolicy
from exchange.trust import TrustStore
from exchange.verification import (
    SignatureShape,
    find_signature,
    legacy_signature_note,
    shape_of,
    split_chain,
    verify_signature,
)
from exchange.xmlsafe import NoResolver, ParseLimits, leading_junk, parse, refuse_doctype


@dataclass(frozen=True)
class SignatureReport:
    present: bool
    kind: str  # "xmldsig", "edxml-namespace (not XML-DSig)", "none"
    method: str | None = None
    digest: str | None = None
    c14n: str | None = None
    certificate_subject: str | None = None
    certificate_issuer: str | None = None
    certificate_not_after: datetime | None = None
    cryptographically: str = "not checked"  # "valid", or why not


@dataclass(frozen=True)
class Inspection:
    size: int
    sha256: str
    kind: Kind | None
    package: Package | None
    problems: tuple[Problem, ...]
    signature: SignatureReport
    verification: str  # the level reached, or why none
    reading_notes: tuple[str, ...] = field(default=())


def _read(data: bytes, limits: ParseLimits) -> tuple[etree._Element, list[str]]:
    notes: list[str] = []
    junk = leading_junk(data)
    if junk:
        notes.append(
            f"{junk} byte(s) before the XML declaration ({data[:junk][:16]!r}) were skipped; "
            "admission refuses such a file as not well-formed"
        )
        data = data[junk:]
    try:
        return parse(data, limits).getroot(), notes
    except MalformedXml as strict_error:
        refuse_doctype(data)  # recovery is never a way around the DOCTYPE ban
        parser = etree.XMLParser(
            recover=True, resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
        )
        parser.resolvers.add(NoResolver())
        try:
            root = etree.fromstring(data, parser=parser)
        except etree.XMLSyntaxError:
            root = None
        if root is None:
            raise strict_error from None
        notes.append(
            f"read in recovery mode after: {strict_error.message}; admission refuses such a file"
        )
        return root, notes


def _signature_report(root: etree._Element, *, well_formed: bool) -> SignatureReport:
    try:
        signature = find_signature(root)
    except SenderFault as exc:
        return SignatureReport(True, "xmldsig", cryptographically=str(exc))
    if signature is None:
        note = legacy_signature_note(root)
        if note:
            return SignatureReport(True, "edxml-namespace (not XML-DSig)", cryptographically=note)
        return SignatureReport(False, "none")
    try:
        shape = shape_of(signature)
    except SenderFault as exc:
        return SignatureReport(True, "xmldsig", cryptographically=str(exc))
    leaf = split_chain(shape.certificates)[0] if shape.certificates else None
    return SignatureReport(
        present=True,
        kind="xmldsig",
        method=shape.method,
        digest=shape.digest,
        c14n=shape.c14n,
        certificate_subject=leaf.subject.rfc4514_string() if leaf else None,
        certificate_issuer=leaf.issuer.rfc4514_string() if leaf else None,
        certificate_not_after=leaf.not_valid_after_utc if leaf else None,
        cryptographically=_check_math(root, shape)
        if well_formed
        else "not checked: the file is not namespace-well-formed, so its signed bytes are unknown",
    )


def _check_math(root: etree._Element, shape: SignatureShape) -> str:
    """Does the signature verify against its own certificate? (No trust implied.)"""
    if not shape.certificates:
        return "cannot check: KeyInfo carries no certificate"
    leaf = split_chain(shape.certificates)[0]
    try:
        config = SignatureConfiguration(
            location=".//",
            signature_methods=frozenset({SignatureMethod(shape.method)}),
            digest_algorithms=frozenset({DigestAlgorithm(shape.digest)}),
            verification_time=leaf.not_valid_before_utc,
        )
        XMLVerifier().verify(root, x509_cert=leaf, expect_config=config)
    except Exception as exc:  # noqa: BLE001 - a report, not a decision: say what signxml said
        return f"does not verify: {type(exc).__name__}: {exc}"
    return "valid against its own certificate (trust not judged)"


def inspect_package(
    data: bytes,
    *,
    policy: VerificationPolicy | None = None,
    trust: TrustStore | None = None,
    binder: Binder | None = None,
    when: datetime | None = None,
    limits: ParseLimits | None = None,
) -> Inspection:
    digest = hashlib.sha256(data).hexdigest()
    root, notes = _read(data, limits or ParseLimits())
    kind, problems = contract.check(root)
    signature = _signature_report(root, well_formed=not any("recovery" in n for n in notes))
    verification = "not checked (give --ca to judge trust)"
    source = root
    level = Level.UNVERIFIED
    if trust is not None and binder is not None and policy is not None and when is not None:
        try:
            verified = verify_signature(root, policy=policy, trust=trust, binder=binder, when=when)
        except LienthongError as exc:
            verification = f"refused: {exc}"
        else:
            source, level = verified.root, verified.level
            verification = verified.level.value
            notes.extend(verified.notes)
    package: Package | None = None
    try:
        package = build_package(
            source,
            kind=kind,
            digest=digest,
            size=len(data),
            level=level,
            signer=None,
            limits=AttachmentLimits(),
        )
    except ContractViolation:
        pass  # the contract's problems above already say what is missing
    except LienthongError as exc:
        problems.append(Problem(None, "/edXML/AttachmentEncoded", exc.message, exc.code))
    return Inspection(
        size=len(data),
        sha256=digest,
        kind=kind,
        package=package,
        problems=tuple(problems),
        signature=signature,
        verification=verification,
        reading_notes=tuple(notes),
    )
