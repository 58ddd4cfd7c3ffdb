"""Attacks found in review, each now refused with its own error (and none with a traceback)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import struct
import subprocess
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

from exchange.admission import Admission, admit
from exchange.attachments import describe
from exchange.devpki import issue, make_ca, make_crl
from exchange.directory import AgencyEntry, Directory, SubjectBinding
from exchange.errors import (
    AttachmentBomb,
    AttachmentInvalid,
    CertificateUntrusted,
    ConfigurationError,
    ContractViolation,
    DoctypeForbidden,
    MalformedXml,
    RevocationUnknown,
    SignatureInvalid,
    SignerNotSender,
)
from exchange.inspection import inspect_package
from exchange.model import Level, Priority
from exchange.policy import LEGACY, STRICT
from exchange.signing import SigningKey, sign
from exchange.trust import TrustStore
from exchange.validation import validate
from tests.conftest import example
from tests.pki import G22, DevPki

DOC = "document-new.edxml"


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!--<a--><!DOCTYPE r [<!ENTITY % e SYSTEM "file:///dev/zero"> %e;]>'
        b"<r/>",
        b'<?xml version="1.0"?><?x <a?><!DOCTYPE r [<!ENTITY % e SYSTEM "file:///etc/hostname">'
        b" %e;]><r/>",
        b"<!-- a comment first --><!doctype r><r/>",
    ],
    ids=["after-a-comment", "after-a-pi", "lower-case"],
)
def test_a_doctype_behind_a_comment_or_pi_is_refused_unparsed(
    data: bytes, admission: Admission
) -> None:
    with pytest.raises(DoctypeForbidden):
        admit(data, STRICT, admission)
    with pytest.raises(DoctypeForbidden):
        inspect_package(data)  # the lenient reader is no way around it


@pytest.mark.parametrize(
    "data",
    [
        '<?xml version="1.0" encoding="cp500"?><!DOCTYPE r []><r/>'.encode("cp500"),
        b'<?xml version="1.0" encoding="ISO-8859-1"?><edXML/>',
    ],
    ids=["ebcdic", "latin-1"],
)
def test_encodings_other_than_utf8_are_refused_unread(data: bytes, admission: Admission) -> None:
    with pytest.raises(MalformedXml, match="UTF-8"):
        admit(data, STRICT, admission)


def test_a_comment_inside_signed_text_is_refused(pki: DevPki, admission: Admission) -> None:
    signed = sign(example(DOC), pki.key(G22))
    # c14n without comments signs "…,125/UBND-VP"; a reader of .text would see "…,1"
    forged = signed.replace(b",2026/11/20,125/UBND-VP<", b",2026/11/20,1<!---->25/UBND-VP<", 1)
    assert forged != signed
    with pytest.raises(ContractViolation) as caught:
        admit(forged, STRICT, admission)
    assert any("comment inside the text of DocumentId" in p.message for p in caught.value.problems)


def test_a_comment_between_elements_is_harmless(pki: DevPki, admission: Admission) -> None:
    data = example(DOC).replace(b"<edXML:Subject>", "<!-- trích yếu --><edXML:Subject>".encode())
    assert admit(sign(data, pki.key(G22)), STRICT, admission).package.level is Level.STRICT


def test_tens_of_thousands_of_bad_elements_give_a_bounded_report() -> None:
    bad = b"<edXML:To><edXML:OrganId>!</edXML:OrganId></edXML:To>" * 15_000  # under the cap
    data = example(DOC).replace(b"</edXML:MessageHeader>", bad + b"</edXML:MessageHeader>")
    report = validate(data)
    assert len(report.problems) == 101
    assert report.problems[-1].code == "contract.too_many_problems"
    assert (
        "15000 more" in report.problems[-1].message or "more problem" in report.problems[-1].message
    )


def test_a_circular_to_ten_thousand_agencies_is_within_the_recipient_cap() -> None:
    """A ministry's circular to every commune is one package: the cap that stops a hostile
    100,000 leaves it alone (the fan-out benchmark sends exactly this)."""
    to = b"".join(
        b"<edXML:To><edXML:OrganId>000.%02d.%02d.H%02d</edXML:OrganId></edXML:To>"
        % (i % 100, i // 100 % 100, 10 + i // 10_000)
        for i in range(10_000)
    )
    data = example(DOC).replace(b"</edXML:MessageHeader>", to + b"</edXML:MessageHeader>")
    report = validate(data)
    assert "contract.too_many_recipients" not in {p.code for p in report.problems}
    assert report.ok, report.problems[:3]


def test_a_malformed_certificate_in_keyinfo_is_a_refusal(pki: DevPki, admission: Admission) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(5)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.4"), b"\x05\x00"), False)
        .add_extension(x509.UnrecognizedExtension(ObjectIdentifier("1.2.3.5"), b"\x05\x00"), False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    der = der.replace(bytes.fromhex("06032a0305"), bytes.fromhex("06032a0304"))  # a duplicate
    signed = sign(example(DOC), pki.key(G22))
    evil = signed.replace(
        b"<X509Certificate>",
        b"<X509Certificate>" + base64.b64encode(der) + b"</X509Certificate><X509Certificate>",
        1,
    )
    with pytest.raises(SignatureInvalid, match="cannot be read"):
        admit(evil, STRICT, admission)


# --- CRLs -----------------------------------------------------------------------------


def test_a_stale_crl_leaves_revocation_unknown(pki: DevPki) -> None:
    stale = make_crl(pki.ca, [], when=datetime.now(UTC) - timedelta(days=30))
    ctx = Admission(trust=TrustStore.from_pem(pki.ca.cert_pem, (stale,)), binder=SubjectBinding())
    with pytest.raises(RevocationUnknown, match="due for renewal"):
        admit(sign(example(DOC), pki.key(G22)), STRICT, ctx)


def test_a_crl_not_signed_by_a_configured_ca_is_refused_at_load(pki: DevPki) -> None:
    impostor = make_ca("lienthong dev CA")  # the same name, another key
    forged = make_crl(impostor, [pki.agencies[G22].cert])
    with pytest.raises(ConfigurationError, match="not signed by a configured CA"):
        TrustStore.from_pem(pki.ca.cert_pem, (forged,))


def test_an_issuer_without_a_crl_leaves_revocation_unknown(pki: DevPki) -> None:
    other = make_ca("another CA")
    bundle = pki.ca.cert_pem + other.cert_pem
    trust = TrustStore.from_pem(bundle, (make_crl(other, []),))
    ctx = Admission(trust=trust, binder=SubjectBinding())
    with pytest.raises(RevocationUnknown, match="no CRL of"):
        admit(sign(example(DOC), pki.key(G22)), STRICT, ctx)


# --- SHA-1 certificate chains ------------------------------------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_sha1_signed_certificate_is_legacy_only(pki: DevPki, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_bytes(pki.ca.cert_pem)
    (tmp_path / "ca.key").write_bytes(pki.ca.key_pem)
    (tmp_path / "ext.cnf").write_text("keyUsage=critical,digitalSignature,nonRepudiation\n")
    run = lambda *a: subprocess.run(a, cwd=tmp_path, check=True, capture_output=True, timeout=60)  # noqa: E731
    run("openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "leaf.key",
        "-subj", f"/CN={G22}", "-out", "leaf.csr")  # fmt: skip
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-set_serial", "7", "-days", "30", "-sha1", "-extfile", "ext.cnf",
        "-out", "leaf.pem")  # fmt: skip
    key = SigningKey.from_pem(
        (tmp_path / "leaf.key").read_bytes(), (tmp_path / "leaf.pem").read_bytes()
    )
    signed = sign(example(DOC), key)
    ctx = Admission(trust=pki.trust, binder=SubjectBinding())
    with pytest.raises(CertificateUntrusted, match="SHA-1, which only a legacy policy accepts"):
        admit(signed, STRICT, ctx)
    package = admit(signed, LEGACY, ctx).package
    assert package.level is Level.LEGACY
    assert any("certificate chain uses SHA-1" in note for note in package.notes)


# --- ZIP wrappers -----------------------------------------------------------------------


def test_a_zip_whose_directory_hides_its_first_entry_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("delivered.pdf", b"%PDF what a streaming unzip sees")
        archive.writestr("shown.pdf", b"%PDF what a directory reader sees")
    data = buffer.getvalue()
    first = data.index(b"PK\x01\x02")
    second = data.index(b"PK\x01\x02", first + 4)
    end = data.rindex(b"PK\x05\x06")
    directory = data[second:end]
    record = bytearray(data[end:])
    struct.pack_into("<HHII", record, 8, 1, 1, len(directory), first)
    with pytest.raises(AttachmentInvalid, match="records disagree"):
        describe(data[:first] + directory + bytes(record), "x")


def _one_entry(content: bytes) -> bytearray:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.pdf", content)
    return bytearray(buffer.getvalue())


def test_a_zip_claiming_more_than_the_limit_is_a_bomb() -> None:
    data = _one_entry(b"\0" * 1000)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 300 * 1024 * 1024)  # claimed size
    with pytest.raises(AttachmentBomb, match="claims"):
        describe(bytes(data), "x")


def test_a_zip_that_understates_its_size_is_refused_as_damaged() -> None:
    data = _one_entry(b"\0" * (4 * 1024 * 1024))
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        struct.pack_into("<I", data, data.index(signature) + offset, 10)
    with pytest.raises(AttachmentInvalid, match="damaged"):
        describe(bytes(data), "x")


# --- inspection -------------------------------------------------------------------------


def test_inspect_reads_an_out_of_range_priority_without_crashing() -> None:
    data = example(DOC).replace(b"<edXML:Priority>0<", b"<edXML:Priority>9<")
    report = inspect_package(data)
    assert report.package is not None
    assert report.package.priority is Priority.NORMAL
    assert report.package.level is Level.UNVERIFIED
    assert any(p.code == "contract.format" and "Priority" in p.message for p in report.problems)
    assert json.dumps(report.package.level.value) == '"unverified"'


# --- subject bindings -------------------------------------------------------------------


def test_an_ou_that_spells_a_cn_does_not_bind(pki: DevPki) -> None:
    impostor = issue(pki.ca, "000.00.00.H41", role=f"CN={G22}")  # OU=CN=000.00.00.G22
    signed = sign(example(DOC), SigningKey(impostor.key, (impostor.cert,)))
    directory = Directory(
        version=1, entries={G22: AgencyEntry(G22, subject={"CN": r"000\.00\.00\.G22"})}
    )
    with pytest.raises(SignerNotSender):
        admit(signed, STRICT, Admission(trust=pki.trust, binder=directory))
