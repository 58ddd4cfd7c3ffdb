"""Admission of one signed package, beside its baseline.

lienthong: ``exchange.admission.admit`` under the strict policy (size cap, hardened
parse, structural XSD, rule pass, signature shape checks, certificate chain to the
configured CA, signxml verification, signer binding, attachment decoding, the Package).

Baseline: the same work called directly, the way a hand-written gateway would do it:
lxml parse with the same hardened parser, the compiled structural XSD, base64 + unzip +
SHA-256 of each attachment, and signxml's ``XMLVerifier().verify`` with the same key type,
the certificate from KeyInfo chained by signxml to the same CA file.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path

from lxml import etree
from signxml.verifier import SignatureConfiguration, XMLVerifier

from bench.timing import alternate, spread
from exchange.admission import Admission, admit
from exchange.contract import _schema, schema_dir
from exchange.devpki import issue, make_ca
from exchange.directory import SubjectBinding
from exchange.edxml import NS
from exchange.model import Kind, Level
from exchange.policy import STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore

SENDER = "000.00.00.G22"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def make_package(target_bytes: int, key: SigningKey, template: bytes | None = None) -> bytes:
    """A signed document of about ``target_bytes``: ``template`` (default: the example new
    document) with an incompressible attachment sized to fit."""
    if template is None:
        template = (schema_dir() / "examples" / "valid" / "document-new.edxml").read_bytes()
    root = etree.fromstring(template, _PARSER)
    payload = root.find(f".//{{{NS}}}ContentTransferEncoded")
    assert payload is not None
    overhead = len(sign(template, key)) - len(payload.text or "")
    raw_size = max(256, (target_bytes - overhead) * 3 // 4)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "scan.pdf", b"%PDF-1.4\n" + os.urandom(raw_size)
        )  # incompressible, like a scan
    payload.text = base64.encodebytes(buffer.getvalue()).decode()
    return sign(etree.tostring(root, xml_declaration=True, encoding="UTF-8"), key)


def baseline(data: bytes, ca_file: str) -> None:
    root = etree.fromstring(data, _PARSER)
    schema = _schema(Kind.EDOC, False)
    if not schema.validate(root):
        raise AssertionError("baseline: package invalid")
    for payload in root.iter(f"{{{NS}}}ContentTransferEncoded"):
        raw = base64.b64decode(payload.text or "")
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            digest = hashlib.sha256()
            with archive.open(archive.infolist()[0]) as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
    config = SignatureConfiguration(location=f"./{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/")
    XMLVerifier().verify(root, ca_pem_file=ca_file, expect_config=config)


def run(*, rounds: int, quick: bool, repeats: int = 3) -> None:
    ca = make_ca()
    agency = issue(ca, SENDER)
    key = SigningKey(agency.key, (agency.cert,))
    ctx = Admission(trust=TrustStore.from_pem(ca.cert_pem), binder=SubjectBinding())
    with tempfile.TemporaryDirectory() as folder:
        ca_file = str(Path(folder) / "ca.pem")
        Path(ca_file).write_bytes(ca.cert_pem)
        print("\n### Admission: one signed package (RSA-2048, SHA-256, exclusive c14n)\n")
        print("| package | lienthong µs/op | baseline µs/op | ratio lienthong/baseline |")
        print("|---|---|---|---|")
        for label, size, iterations in (("10 KiB", 10 * 1024, 300), ("1 MiB", 1024 * 1024, 12)):
            data = make_package(size, key)
            assert admit(data, STRICT, ctx).package.level is Level.STRICT
            baseline(data, ca_file)
            pair = alternate(
                lambda d=data: admit(d, STRICT, ctx),
                lambda d=data: baseline(d, ca_file),
                rounds=rounds,
                iterations=3 if quick else iterations,
            )
            print(
                f"| {label} ({len(data):,} bytes) | {spread(pair.ours_us)} "
                f"| {spread(pair.base_us)} | {spread(pair.ratios, '{:.2f}')} |"
            )
    print(f"\nMedian (min–max) over {rounds} alternating rounds in one process, one core.")
