"""Signing edXML packages through signxml: enveloped, whole document, exclusive c14n.

The signature goes where the official samples put it, as the last child of
edXMLEnvelope/edXMLHeader, and covers the whole document (Reference URI="").
Any signature already present (including the legacy edXML-namespace ones) is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner

from exchange.edxml import DSIG_NS, header, line_of, q
from exchange.errors import ConfigurationError, ContractViolation, Problem
from exchange.xmlsafe import ParseLimits, parse

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


def _spki(public_key: object) -> bytes:
    der: bytes = public_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


@dataclass(frozen=True)
class SigningKey:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]  # signing certificate first

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(f"the signing key could not be read: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ConfigurationError("the signing key must be RSA or ECDSA")
        try:
            chain = tuple(x509.load_pem_x509_certificates(cert_pem))
        except ValueError as exc:
            raise ConfigurationError(f"the certificate could not be read: {exc}") from exc
        if _spki(chain[0].public_key()) != _spki(key.public_key()):
            raise ConfigurationError("the certificate does not belong to the signing key")
        return cls(key, chain)

    @property
    def algorithm(self) -> str:
        return "ecdsa-sha256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "rsa-sha256"


def _strip_signatures(root: etree._Element) -> None:
    found = list(root.iter(f"{{{DSIG_NS}}}Signature", q("Signature"), q("DigitalSignature")))
    for old in found:
        parent = old.getparent()
        if parent is not None:
            parent.remove(old)


class _LegacySigner(XMLSigner):
    """Signs as today's national axis SDK does (RSA-SHA1), which signxml refuses by default:
    for the sandbox and tests of the legacy policy only, never for a node's own packages."""

    def check_deprecated_methods(self) -> None:
        return None


def sign_tree(root: etree._Element, key: SigningKey, *, legacy: bool = False) -> etree._Element:
    head = header(root)
    if head is None:
        raise ContractViolation(
            [Problem(line_of(root), "/edXML", "edXMLEnvelope/edXMLHeader is required to sign")]
        )
    _strip_signatures(root)
    # The official samples declare XML-DSig as the default namespace on Signature.
    etree.SubElement(head, f"{{{DSIG_NS}}}Signature", Id="placeholder", nsmap={None: DSIG_NS})  # type: ignore[dict-item]
    signer = (_LegacySigner if legacy else XMLSigner)(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha1" if legacy else key.algorithm,
        digest_algorithm="sha1" if legacy else "sha256",
        c14n_algorithm=EXC_C14N,
    )
    signer.namespaces = {None: DSIG_NS}  # type: ignore[dict-item]
    signed: etree._Element = signer.sign(root, key=key.key, cert=list(key.chain))
    for sig in signed.iter(f"{{{DSIG_NS}}}Signature"):
        if "Id" in sig.attrib:
            del sig.attrib["Id"]  # outside SignedInfo: the enveloped transform drops it
    return signed


def sign(
    data: bytes, key: SigningKey, limits: ParseLimits | None = None, *, legacy: bool = False
) -> bytes:
    """Sign a package's bytes; returns the signed package's bytes (UTF-8, declared).
    ``legacy`` signs with RSA-SHA1 as today's SDK does (an RSA key; tests and sandbox)."""
    root = parse(data, limits).getroot()
    signed = sign_tree(root, key, legacy=legacy)
    out: bytes = etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
    return out
