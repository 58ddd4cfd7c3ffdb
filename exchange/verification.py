"""Verifying a package's XML signature under a source's policy.

The checks, in order, each with its own error:
1. exactly one XML-DSig Signature in the whole document, at edXMLEnvelope/edXMLHeader;
2. exactly one Reference, with URI="" (the whole document), and only the enveloped and
   canonicalisation transforms: a reference by Id or an XPath is refused (wrapping);
3. the algorithms the policy allows (SHA-1 only under ``legacy``), and its c14n methods;
4. the signing certificate: within its validity, chained to the configured CAs only,
   not revoked by a configured CRL;
5. the cryptography itself, by signxml, against that certificate;
6. the binding of that certificate to From/OrganId, read from the verified document.

The result carries the verified tree: everything downstream reads only that.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidDigest, InvalidInput, InvalidSignature, SignXMLException
from signxml.verifier import SignatureConfiguration, XMLVerifier

from exchange.directory import Binder
from exchange.edxml import DSIG_NS, NS, header, kid, local, sender_id
from exchange.errors import (
    CertificateMissing,
    SignatureAlgorithm,
    SignatureInvalid,
    SignatureMissing,
    SignatureMultiple,
    SignatureNotXmlDsig,
    SignaturePlacement,
    SignatureReference,
    SignerNotSender,
)
from exchange.model import Level, Signer
from exchange.policy import (
    ALL_C14N,
    ENVELOPED,
    LEGACY_DIGESTS,
    LEGACY_SIGNATURES,
    VerificationPolicy,
)
from exchange.trust import Chain, TrustStore, fingerprint

_SIG = f"{{{DSIG_NS}}}Signature"
_LOCATION = f"./{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/"


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


@dataclass(frozen=True)
class Verified:
    level: Level
    root: etree._Element  # the verified document (or the original one when unsigned)
    signer: Signer | None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SignatureShape:
    """What a signature claims, read before anything is trusted (for checks and inspect)."""

    signature: etree._Element
    c14n: str
    method: str
    digest: str
    reference_uri: str | None
    transforms: tuple[str, ...]
    certificates: tuple[x509.Certificate, ...]


def legacy_signature_note(root: etree._Element) -> str | None:
    head = header(root)
    for name in ("Signature", "DigitalSignature"):
        if kid(head, name) is not None:
            return (
                f"edXMLHeader carries an edXML:{name} in the edXML namespace, not an XML-DSig "
                f"signature ({DSIG_NS}); it cannot be verified (as emitted by the EdXML102 library)"
            )
    return None


def find_signature(root: etree._Element) -> etree._Element | None:
    """The one XML-DSig signature at the expected place; errors for any other shape."""
    found = list(root.iter(_SIG))
    if not found:
        return None
    if len(found) > 1:
        raise SignatureMultiple(
            f"the document carries {len(found)} XML-DSig signatures; exactly one is allowed"
        )
    signature = found[0]
    parent = signature.getparent()
    head = header(root)
    if parent is None or head is None or parent is not head:
        where = local(parent) if parent is not None else "the root"
        raise SignaturePlacement(
            f"the signature is inside {where}; it must be a child of edXMLEnvelope/edXMLHeader"
        )
    return signature


def _certificates(signature: etree._Element) -> tuple[x509.Certificate, ...]:
    """The certificates in KeyInfo, each read whole now: cryptography parses names and
    extensions lazily, and a malformed one must fail here, as a refusal, not later."""
    certs = []
    for el in signature.iterfind(f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"):
        try:
            cert = x509.load_der_x509_certificate(
                base64.b64decode("".join((el.text or "").split()))
            )
            list(cert.subject)
            list(cert.issuer)
            list(cert.extensions)
            cert.public_key()
        except Exception as exc:
            raise SignatureInvalid(
                f"an X509Certificate in KeyInfo cannot be read: {type(exc).__name__}: {exc}"
            ) from exc
        certs.append(cert)
    return tuple(certs)


def shape_of(signature: etree._Element) -> SignatureShape:
    signed_info = signature.find(_ds("SignedInfo"))
    if signed_info is None:
        raise SignatureInvalid("the signature has no SignedInfo")
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1:
        raise SignatureReference(
            f"the signature has {len(references)} References; exactly one, over the whole "
            'document (URI=""), is allowed'
        )
    reference = references[0]
    c14n = signed_info.find(_ds("CanonicalizationMethod"))
    method = signed_info.find(_ds("SignatureMethod"))
    digest = reference.find(_ds("DigestMethod"))
    return SignatureShape(
        signature=signature,
        c14n=c14n.get("Algorithm", "") if c14n is not None else "",
        method=method.get("Algorithm", "") if method is not None else "",
        digest=digest.get("Algorithm", "") if digest is not None else "",
        reference_uri=reference.get("URI"),
        transforms=tuple(
            t.get("Algorithm", "")
            for t in reference.iterfind(f"{_ds('Transforms')}/{_ds('Transform')}")
        ),
        certificates=_certificates(signature),
    )


def check_shape(shape: SignatureShape, policy: VerificationPolicy) -> None:
    """Steps 2 and 3 and a certificate present: what the signature claims, under the policy."""
    if shape.reference_uri != "":
        raise SignatureReference(
            f'the signature\'s Reference URI is {shape.reference_uri!r}; it must be "" so '
            "that it covers the whole document"
        )
    if ENVELOPED not in shape.transforms or any(
        t not in ALL_C14N and t != ENVELOPED for t in shape.transforms
    ):
        raise SignatureReference(
            "the Reference transforms must be enveloped-signature and at most a "
            f"canonicalisation; found {', '.join(shape.transforms) or 'none'}"
        )
    if shape.c14n not in policy.c14n:
        raise SignatureAlgorithm(
            f"canonicalisation {shape.c14n!r} is not allowed by policy {policy.name!r}"
        )
    for transform in shape.transforms:
        if transform != ENVELOPED and transform not in policy.c14n:
            raise SignatureAlgorithm(
                f"transform {transform!r} is not allowed by policy {policy.name!r}"
            )
    if not policy.allows_signature(shape.method):
        hint = (
            " (SHA-1 is accepted only under a legacy policy)"
            if shape.method in LEGACY_SIGNATURES
            else ""
        )
        raise SignatureAlgorithm(
            f"signature method {shape.method!r} is not allowed by policy {policy.name!r}{hint}"
        )
    if not policy.allows_digest(shape.digest):
        hint = (
            " (SHA-1 is accepted only under a legacy policy)"
            if shape.digest in LEGACY_DIGESTS
            else ""
        )
        raise SignatureAlgorithm(
            f"digest method {shape.digest!r} is not allowed by policy {policy.name!r}{hint}"
        )
    if not shape.certificates:
        raise CertificateMissing("the signature's KeyInfo carries no X509Certificate")


def split_chain(
    certs: tuple[x509.Certificate, ...],
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    def is_ca(cert: x509.Certificate) -> bool:
        try:
            return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
        except x509.ExtensionNotFound:
            return False

    leaves = [c for c in certs if not is_ca(c)]
    leaf = leaves[0] if leaves else certs[0]
    return leaf, [c for c in certs if c is not leaf]


def _signxml_config(shape: SignatureShape, when: datetime) -> SignatureConfiguration:
    return SignatureConfiguration(
        require_x509=True,
        location=_LOCATION,
        expect_references=1,
        signature_methods=frozenset({SignatureMethod(shape.method)}),
        digest_algorithms=frozenset({DigestAlgorithm(shape.digest)}),
        verification_time=when,
    )


def _verify_crypto(
    root: etree._Element, shape: SignatureShape, leaf: x509.Certificate, when: datetime
) -> etree._Element:
    try:
        result = XMLVerifier().verify(
            root, x509_cert=leaf, expect_config=_signxml_config(shape, when)
        )
    except InvalidDigest as exc:
        raise SignatureInvalid(
            "the signed content was changed after signing (the document digest does not match)"
        ) from exc
    except InvalidSignature as exc:
        raise SignatureInvalid(f"the signature value does not verify: {exc}") from exc
    except (InvalidInput, SignXMLException, ValueError) as exc:
        raise SignatureInvalid(f"the signature cannot be verified: {exc}") from exc
    verified = result.signed_xml  # type: ignore[union-attr]
    if verified is None:
        raise SignatureInvalid("the signed content is not an XML document")
    return verified


def _sender_of(root: etree._Element) -> str:
    organ = sender_id(root)
    if organ is None:
        raise SignerNotSender("the verified document names no From/OrganId to bind the signer to")
    return organ


def unsigned_notes(root: etree._Element, policy: VerificationPolicy) -> tuple[str, ...]:
    """The notes of a package with no XML-DSig signature, when the policy admits it;
    otherwise the error that refuses it."""
    note = legacy_signature_note(root)
    if policy.allow_unsigned:
        notes = ("no XML-DSig signature; admitted unsigned under policy " + repr(policy.name),)
        return (*notes, note) if note else notes
    if note:
        raise SignatureNotXmlDsig(note)
    raise SignatureMissing(
        f"the package is not signed, and policy {policy.name!r} requires an XML-DSig signature"
    )


def verify_signature(
    root: etree._Element,
    *,
    policy: VerificationPolicy,
    trust: TrustStore,
    binder: Binder,
    when: datetime,
) -> Verified:
    """Establish the package's verification level, or raise the specific error."""
    signature = find_signature(root)
    if signature is None:
        return Verified(Level.UNSIGNED, root, None, unsigned_notes(root, policy))
    shape = shape_of(signature)
    check_shape(shape, policy)
    leaf, intermediates = split_chain(shape.certificates)
    chain = trust.validate(leaf, intermediates, when, allow_sha1=policy.allow_sha1)
    verified = _verify_crypto(root, shape, leaf, when)
    bound_by = binder.bind(_sender_of(verified), leaf)
    level, signer, notes = verdict(shape, leaf, chain, bound_by, policy)
    return Verified(level, verified, signer, notes)


def verdict(
    shape: SignatureShape,
    leaf: x509.Certificate,
    chain: Chain,
    bound_by: str,
    policy: VerificationPolicy,
) -> tuple[Level, Signer, tuple[str, ...]]:
    """The level and signer of a signature that verified, bound to its sender."""
    legacy = shape.method in LEGACY_SIGNATURES or shape.digest in LEGACY_DIGESTS or chain.legacy
    signer = Signer(
        subject=leaf.subject.rfc4514_string(),
        issuer=leaf.issuer.rfc4514_string(),
        serial=leaf.serial_number,
        fingerprint_sha256=fingerprint(leaf),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        algorithm=shape.method,
        digest=shape.digest,
        c14n=shape.c14n,
        bound_by=bound_by,
    )
    if not legacy:
        return Level.STRICT, signer, ()
    what = "its certificate chain uses SHA-1" if chain.legacy else "signed with SHA-1"
    note = f"{what}; admitted as legacy under policy {policy.name!r}"
    return Level.LEGACY, signer, (note,)
