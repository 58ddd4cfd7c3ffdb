"""Verifying a package's whole-document XML signature as it streams.

The checks and their errors are those of ``verification.verify_signature``, in the same
order; what differs is where the data comes from. One pass (``stream_scan``) digests
the document minus the enveloped signature in the canonical form the Reference names,
and keeps the signature itself (a few KiB) and a skeleton of the document (attachments
replaced by stand-ins). Then, on those small pieces:

1. exactly one XML-DSig Signature, at edXMLEnvelope/edXMLHeader;
2. one Reference, URI="", enveloped and canonicalisation transforms only;
3. the policy's algorithms, and a certificate in KeyInfo;
4. the certificate chain, validity and CRLs through ``TrustStore``;
5. the signature: the Signature element is read as signxml reads it (on its own, with
   the namespaces in scope where it stood; the XML-DSig schema), SignedInfo is
   canonicalised by lxml as its CanonicalizationMethod says, the SignatureValue is
   checked over it with ``cryptography``, and the DigestValue against the stream's;
6. the certificate's binding to From/OrganId, read from the skeleton: the same events
   that were digested, so nothing unsigned is read.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from lxml import etree
from signxml.verifier import XMLVerifier

from exchange.directory import Binder
from exchange.edxml import DSIG_NS, sender_id
from exchange.errors import (
    SignatureInvalid,
    SignatureMultiple,
    SignaturePlacement,
    SignatureReference,
    SignerNotSender,
)
from exchange.model import Level, Signer
from exchange.policy import DSIG, DSIG_MORE, VerificationPolicy
from exchange.stream_c14n import C14nMethod
from exchange.stream_scan import Scanned, scan
from exchange.trust import TrustStore
from exchange.verification import (
    SignatureShape,
    check_shape,
    shape_of,
    split_chain,
    unsigned_notes,
    verdict,
)
from exchange.xmlsafe import ParseLimits

LARGE_PACKAGE_BYTES = 2 * 1024 * 1024 * 1024
"""What ``verify_stream`` reads at most unless told otherwise."""

_DS = f"{{{DSIG_NS}}}"
_EXC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    DSIG + "rsa-sha1": hashes.SHA1,
    DSIG_MORE + "rsa-sha256": hashes.SHA256,
    DSIG_MORE + "rsa-sha384": hashes.SHA384,
    DSIG_MORE + "rsa-sha512": hashes.SHA512,
    DSIG_MORE + "ecdsa-sha256": hashes.SHA256,
    DSIG_MORE + "ecdsa-sha384": hashes.SHA384,
    DSIG_MORE + "ecdsa-sha512": hashes.SHA512,
}


@dataclass(frozen=True)
class VerifiedStream:
    level: Level
    signer: Signer | None
    sender: str | None
    """From/OrganId as the verified document states it."""
    sha256: str
    """SHA-256 of the bytes as received (the package digest)."""
    size: int
    notes: tuple[str, ...] = ()


def verify_stream(
    stream: BinaryIO,
    policy: VerificationPolicy,
    trust: TrustStore,
    binder: Binder,
    *,
    when: datetime,
    limits: ParseLimits | None = None,
    size: int | None = None,
) -> VerifiedStream:
    """Establish a streamed package's verification level, or raise the specific error
    (the errors of ``xmlsafe.parse`` first, then those of ``verify_signature``)."""
    scanned = scan(stream, limits or ParseLimits(max_bytes=LARGE_PACKAGE_BYTES), size=size)
    scanned.close()
    level, signer, notes = verify_scanned(
        scanned, policy=policy, trust=trust, binder=binder, when=when
    )
    return VerifiedStream(
        level, signer, sender_id(scanned.skeleton), scanned.sha256, scanned.size, notes
    )


def verify_scanned(
    scanned: Scanned,
    *,
    policy: VerificationPolicy,
    trust: TrustStore,
    binder: Binder,
    when: datetime,
) -> tuple[Level, Signer | None, tuple[str, ...]]:
    sigs = scanned.signatures
    if sigs.count == 0:
        return Level.UNSIGNED, None, unsigned_notes(scanned.skeleton, policy)
    if sigs.count > 1:
        raise SignatureMultiple(
            f"the document carries {sigs.count} XML-DSig signatures; exactly one is allowed"
        )
    if sigs.xml is None:
        raise SignaturePlacement(
            f"the signature is inside {sigs.misplaced_in}; it must be a child of "
            "edXMLEnvelope/edXMLHeader"
        )
    signature = standalone_signature(sigs.xml)
    shape = shape_of(signature)
    check_shape(shape, policy)
    if sigs.digest is None:
        raise SignatureReference(
            f"the signature cannot be verified as a stream: {sigs.unsupported or 'no digest'}"
        )
    leaf, intermediates = split_chain(shape.certificates)
    chain = trust.validate(leaf, intermediates, when, allow_sha1=policy.allow_sha1)
    check_value(signature, shape, leaf)
    check_digest(signature, sigs.digest)
    sender = sender_id(scanned.skeleton)
    if sender is None:
        raise SignerNotSender("the verified document names no From/OrganId to bind the signer to")
    return verdict(shape, leaf, chain, binder.bind(sender, leaf), policy)


def standalone_signature(wrapped: str) -> etree._Element:
    """The signature as signxml reads it: serialised on its own (lxml carries the
    namespaces in scope onto it), parsed again."""
    wrapper = etree.fromstring(wrapped.encode("utf-8"), parser=_PARSER)
    alone: etree._Element = etree.fromstring(etree.tostring(wrapper[0]), parser=_PARSER)
    return alone


def _c14n_of(method_el: etree._Element | None) -> C14nMethod:
    uri = method_el.get("Algorithm", "") if method_el is not None else ""
    listed = (
        method_el.find(f"{{{_EXC_NS}}}InclusiveNamespaces[@PrefixList]")
        if method_el is not None
        else None
    )
    return C14nMethod.from_uri(uri, listed.get("PrefixList") if listed is not None else None)


def signed_info_c14n(signature: etree._Element) -> bytes:
    signed_info = signature.find(f"{_DS}SignedInfo")
    if signed_info is None:
        raise SignatureInvalid("the signature has no SignedInfo")
    method = _c14n_of(signed_info.find(f"{_DS}CanonicalizationMethod"))
    canonical: bytes = etree.tostring(signed_info, method="c14n", **method.lxml_args)  # type: ignore[call-overload]
    return canonical


def _b64(el: etree._Element | None, what: str) -> bytes:
    try:
        return base64.b64decode((el.text if el is not None else None) or "")
    except (binascii.Error, ValueError) as exc:
        raise SignatureInvalid(f"the signature's {what} is not base64") from exc


def check_value(signature: etree._Element, shape: SignatureShape, leaf: x509.Certificate) -> None:
    """The SignatureValue over the canonical SignedInfo, with the leaf's public key."""
    try:
        cast(Any, XMLVerifier()).validate_schema(signature)
    except Exception as exc:  # signxml raises its own errors and lxml's
        raise SignatureInvalid(f"the signature cannot be verified: {exc}") from exc
    data = signed_info_c14n(signature)
    value = _b64(signature.find(f"{_DS}SignatureValue"), "SignatureValue")
    algorithm = _HASHES[shape.method]()
    key = leaf.public_key()
    try:
        if shape.method.rpartition("#")[2].startswith("rsa-") and isinstance(key, rsa.RSAPublicKey):
            key.verify(value, data, padding.PKCS1v15(), algorithm)
        elif shape.method.rpartition("#")[2].startswith("ecdsa-") and isinstance(
            key, ec.EllipticCurvePublicKey
        ):
            key.verify(_der_ecdsa(value, key), data, ec.ECDSA(algorithm))
        else:
            raise SignatureInvalid(
                f"the signature cannot be verified: {shape.method} with a "
                f"{type(key).__name__} certificate"
            )
    except InvalidSignature as exc:
        raise SignatureInvalid(f"the signature value does not verify: {exc}") from exc


def _der_ecdsa(value: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    """XML-DSig carries r and s side by side; cryptography takes them DER-encoded."""
    half = (key.curve.key_size + 7) // 8
    if len(value) != 2 * half:
        raise InvalidSignature(f"expected a {2 * half} byte SignatureValue, got {len(value)}")
    r, s = int.from_bytes(value[:half], "big"), int.from_bytes(value[half:], "big")
    return utils.encode_dss_signature(r, s)


def check_digest(signature: etree._Element, digest: bytes) -> None:
    stated = _b64(signature.find(f"{_DS}SignedInfo/{_DS}Reference/{_DS}DigestValue"), "DigestValue")
    if stated != digest:
        raise SignatureInvalid(
            "the signed content was changed after signing (the document digest does not match)"
        )
