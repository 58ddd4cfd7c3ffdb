"""Signed delivery receipts: a destination node's word that it delivered a package.

When a node puts a package into its agencies' mailboxes it issues one receipt per message
per batch, signed with its node certificate: an enveloped XML-DSig signature over the whole
document (Reference URI="", exclusive c14n, SHA-256, the certificate in KeyInfo).
schemas/receipt.xsd is the document and exchange/receipt_xml.py its form; docs/wire.md
("Delivery receipts") says what it binds.

Reading one trusts nothing in it until the signature verifies with the certificate pinned
for the node it names (never the certificate it carries); every value is then read from the
element signxml returns, not from the document as received (signature wrapping).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from lxml import etree
from signxml.algorithms import DigestAlgorithm, SignatureConstructionMethod, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, SignXMLException
from signxml.exceptions import InvalidSignature as BadSignature
from signxml.signer import XMLSigner
from signxml.verifier import SignatureConfiguration, XMLVerifier

from exchange.edxml import DSIG_NS
from exchange.errors import ConfigurationError, ReceiptInvalid, ReceiptPackageMismatch
from exchange.model import Level
from exchange.pades import from_record
from exchange.receipt_xml import (
    DeliveryReceipt,
    ReceiptRecipient,
    check_document,
    instant,
    parse_receipt,
    receipt_from,
    receipt_tree,
    schema_problem,
    text_of,
)
from exchange.signing import EXC_C14N
from exchange.store import OutboxRow
from exchange.trust import fingerprint
from exchange.xmlsafe import ParseLimits

__all__ = [
    "DeliveryReceipt",
    "ReceiptRecipient",
    "ReceiptSigner",
    "VerifiedReceipt",
    "check_against_package",
    "issue_receipt",
    "package_sha256",
    "read_receipt",
]

ReceiptKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_METHODS = frozenset(
    {
        SignatureMethod.ECDSA_SHA256,
        SignatureMethod.ECDSA_SHA384,
        SignatureMethod.ECDSA_SHA512,
        SignatureMethod.RSA_SHA256,
        SignatureMethod.RSA_SHA384,
        SignatureMethod.RSA_SHA512,
    }
)
_DIGESTS = frozenset({DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512})


def _ds(name: str) -> str:
    return f"{{{DSIG_NS}}}{name}"


def _spki(key: object) -> bytes:
    der: bytes = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def package_sha256(data: bytes) -> str:
    """What a receipt's PackageSha256 holds: lowercase hex SHA-256 of the exact bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class VerifiedReceipt:
    """A receipt whose signature verified with the certificate pinned for its node."""

    receipt: DeliveryReceipt
    signer_subject: str  # the node certificate's subject (RFC 4514)
    signer_fingerprint: str  # SHA-256 of the node certificate (DER), lowercase hex


# --- issuing --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _belongs(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bool:
    """Whether the certificate is the key's: judged once per pair, not once per receipt."""
    return _spki(cert.public_key()) == _spki(key.public_key())


def _signing_key(
    node: str, key: object, cert: x509.Certificate
) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError(
            f"node {node}: receipts are XML-DSig signatures, and signxml cannot sign with an "
            "Ed25519 key; give the node an ECDSA P-256 key and certificate"
        )
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigurationError(f"node {node}: a receipt key must be ECDSA or RSA")
    if not _belongs(cert, key):
        raise ConfigurationError(
            f"node {node}: the certificate {cert.subject.rfc4514_string()} does not belong to "
            "the node key"
        )
    return key


def issue_receipt(receipt: DeliveryReceipt, key: ReceiptKey, cert: x509.Certificate) -> bytes:
    """The signed receipt: UTF-8 bytes with an XML declaration.

    ``key`` is the node's private key (ECDSA P-256, or RSA) and ``cert`` its node
    certificate, which goes into KeyInfo. Raises ConfigurationError for an Ed25519 key or a
    certificate of another key, ValueError for values that break schemas/receipt.xsd.
    """
    signing_key = _signing_key(receipt.node, key, cert)
    ecdsa = isinstance(signing_key, ec.EllipticCurvePrivateKey)
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="ecdsa-sha256" if ecdsa else "rsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    signed: etree._Element = signer.sign(receipt_tree(receipt), key=signing_key, cert=[cert])
    problem = schema_problem(signed)
    if problem is not None:
        raise ValueError(f"the receipt would not follow schemas/receipt.xsd: {problem}")
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out


@dataclass(frozen=True)
class ReceiptSigner:
    """What a node signs its receipts with: its id, node key and node certificate."""

    node_id: str
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    cert: x509.Certificate

    @classmethod
    def from_pem(cls, node_id: str, key_pem: bytes, cert_pem: bytes) -> ReceiptSigner:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            certs = x509.load_pem_x509_certificates(cert_pem)
            # after a rotation the file holds the node's certificates, old and new: the
            # one of this key signs
            cert = next((c for c in certs if _same_key(c.public_key(), key.public_key())), certs[0])
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"node {node_id}: the node key or certificate cannot be read: {exc}"
            ) from exc
        return cls(node_id, _signing_key(node_id, key, cert), cert)

    def issue(self, receipt: DeliveryReceipt) -> bytes:
        if receipt.node != self.node_id:
            raise ValueError(f"node {self.node_id} cannot sign a receipt of node {receipt.node}")
        return issue_receipt(receipt, self.key, self.cert)


def _same_key(one: object, other: object) -> bool:
    encoding, form = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        return bool(one.public_bytes(encoding, form) == other.public_bytes(encoding, form))  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


# --- reading --------------------------------------------------------------------------


def _check_reference(signature: etree._Element) -> None:
    """One Reference to the whole document, by the enveloped transform and a c14n only."""
    references = signature.findall(f"{_ds('SignedInfo')}/{_ds('Reference')}")
    if len(references) != 1 or references[0].get("URI") != "":
        raise ReceiptInvalid('the signature must have exactly one Reference, with URI=""')
    transforms = [t.get("Algorithm") for t in references[0].iter(_ds("Transform"))]
    if _ENVELOPED not in transforms or any(t not in (_ENVELOPED, EXC_C14N) for t in transforms):
        raise ReceiptInvalid(
            "the signature's transforms must be enveloped-signature and exclusive c14n; "
            f"found {', '.join(str(t) for t in transforms) or 'none'}"
        )


def _verify(
    root: etree._Element, node: str, cert: x509.Certificate, when: datetime
) -> etree._Element:
    config = SignatureConfiguration(
        require_x509=True,
        location="./",  # a child of DeliveryReceipt
        expect_references=1,
        signature_methods=_METHODS,
        digest_algorithms=_DIGESTS,
        verification_time=when,  # the certificate must have been valid when it was issued
    )
    try:
        result = XMLVerifier().verify(root, x509_cert=cert, expect_config=config)
    except InvalidDigest as exc:
        raise ReceiptInvalid(
            f"the signature does not verify: the receipt was changed after node {node} signed "
            "it (the digest does not match)"
        ) from exc
    except InvalidCertificate as exc:
        raise ReceiptInvalid(
            f"node {node}'s certificate was not valid at the receipt's IssuedAt "
            f"({when.isoformat()}): {exc}"
        ) from exc
    except BadSignature as exc:
        raise ReceiptInvalid(
            f"the signature does not verify with node {node}'s certificate (it was made with "
            "another key, or its SignedInfo was changed)"
        ) from exc
    except (SignXMLException, ValueError) as exc:
        raise ReceiptInvalid(f"the signature cannot be verified: {exc}") from exc
    verified: etree._Element | None = result.signed_xml  # type: ignore[union-attr]
    if verified is None:
        raise ReceiptInvalid("the signature does not verify: it covers no XML element")
    return verified


def _check_key_info(signature: etree._Element, node: str, cert: x509.Certificate) -> None:
    """KeyInfo is not signed; what it carries, if anything, must be the pinned certificate."""
    pinned = cert.public_bytes(serialization.Encoding.DER)
    path = f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"
    for el in signature.iterfind(path):
        try:
            carried = base64.b64decode("".join((el.text or "").split()), validate=True)
        except (binascii.Error, ValueError):
            carried = b""
        if carried != pinned:
            raise ReceiptInvalid(
                f"the certificate in KeyInfo is not the certificate pinned for node {node}"
            )


def _pinned_for(
    signature: etree._Element, pinned: x509.Certificate | tuple[x509.Certificate, ...]
) -> tuple[x509.Certificate, ...]:
    certs = pinned if isinstance(pinned, tuple) else (pinned,)
    path = f"{_ds('KeyInfo')}/{_ds('X509Data')}/{_ds('X509Certificate')}"
    carried = signature.find(path)
    if carried is None or len(certs) == 1:
        return certs
    try:
        der = base64.b64decode("".join((carried.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        return certs[:1]  # _check_key_info says what is wrong with it
    chosen = tuple(c for c in certs if c.public_bytes(serialization.Encoding.DER) == der)
    return chosen or certs[:1]


def read_receipt(
    data: bytes,
    node_certs: Mapping[str, x509.Certificate | tuple[x509.Certificate, ...]],
    *,
    limits: ParseLimits | None = None,
) -> VerifiedReceipt:
    """Check a receipt offline: well-formed, following schemas/receipt.xsd, and signed with
    the key of the certificate ``node_certs`` pins for the node it names. Raises
    ReceiptInvalid saying why not."""
    root = parse_receipt(data, limits)
    signature = check_document(root)
    node = text_of(root, "r:Node")
    pinned = node_certs.get(node)
    if pinned is None:
        raise ReceiptInvalid(
            f"node {node} is unknown (no certificate): its receipt cannot be checked"
        )
    _check_reference(signature)
    issued_at = instant(text_of(root, "r:IssuedAt"), "IssuedAt")
    # several certificates are pinned for a node that rotated its key: the one KeyInfo
    # carries, or (none carried) whichever verifies
    candidates = _pinned_for(signature, pinned)
    for cert in candidates:
        try:
            verified = _verify(root, node, cert, issued_at)
            break
        except ReceiptInvalid:
            if cert is candidates[-1]:
                raise
    _check_key_info(signature, node, cert)
    receipt = receipt_from(verified)
    if receipt.node != node or receipt.issued_at != issued_at:
        raise ReceiptInvalid("the signed Node or IssuedAt is not the one the receipt shows")
    return VerifiedReceipt(receipt, cert.subject.rfc4514_string(), fingerprint(cert))


def check_against_package(receipt: DeliveryReceipt, data: bytes) -> None:
    """Raise ReceiptPackageMismatch unless ``data`` are the exact bytes the receipt covers."""
    digest = package_sha256(data)
    if digest != receipt.package_sha256:
        raise ReceiptPackageMismatch(
            f"the package's SHA-256 is {digest}, but the receipt of message "
            f"{receipt.message_id} covers {receipt.package_sha256}"
        )


def receipt_issuer(
    signer: ReceiptSigner,
) -> Callable[[OutboxRow, Sequence[str], datetime, Sequence[Mapping[str, Any]]], bytes]:
    """What the relay calls as it puts a package in these mailboxes: the signed receipt."""

    def issue(
        row: OutboxRow,
        recipients: Sequence[str],
        at: datetime,
        pdf: Sequence[Mapping[str, Any]] = (),
    ) -> bytes:
        return signer.issue(
            DeliveryReceipt(
                message_id=row.message_id,
                document_id=row.document_id,
                sender=row.sender or "",
                node=signer.node_id,
                level=Level(row.level or Level.UNSIGNED.value),
                package_sha256=row.digest,
                issued_at=at,
                recipients=tuple(ReceiptRecipient(organ, at) for organ in sorted(recipients)),
                pdf_signatures=tuple(from_record(record) for record in pdf),
            )
        )

    return issue
