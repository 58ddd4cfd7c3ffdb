"""Development PDFs: a one-page PDF and a PAdES signature on it, made with pyHanko, for
the sandbox, the tests and the benchmarks (never for an agency's real documents)."""

from __future__ import annotations

import io

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from exchange.devpki import Issued

CONTENT = b"% quyet dinh so 125/QD-UBND\n"


def blank_pdf(content: bytes = CONTENT) -> bytes:
    """One A4 page whose content stream is ``content`` (a comment): PDF bytes to sign."""
    writer = PdfFileWriter()
    stream = writer.add_object(generic.StreamObject(stream_data=content))
    box = generic.ArrayObject([generic.NumberObject(n) for n in (0, 0, 595, 842)])
    writer.insert_page(PageObject(contents=stream, media_box=box))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign_pdf(pdf: bytes, issued: Issued, ca: Issued, field: str = "Signature1") -> bytes:
    """``pdf`` with one more PAdES signature by ``issued`` (its chain: ``ca``)."""
    key = issued.key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = signers.SimpleSigner(
        signing_cert=_asn1(issued.cert),
        signing_key=asn1_keys.PrivateKeyInfo.load(key),
        cert_registry=SimpleCertificateStore.from_certs([_asn1(ca.cert)]),
    )
    out: io.BytesIO = signers.sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)),
        signers.PdfSignatureMetadata(field_name=field),
        signer=signer,
    )
    return out.getvalue()
