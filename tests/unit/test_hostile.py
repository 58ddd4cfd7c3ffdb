"""Hostile input: every attack is refused with its own error, and nothing else breaks."""

from __future__ import annotations

import base64
import hashlib
import io
import unicodedata
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from signxml.signer import XMLSigner

from exchange.admission import Admission, admit
from exchange.devpki import issue, make_crl
from exchange.directory import AgencyEntry, Directory, SubjectBinding
from exchange.edxml import DSIG_NS, header, kid
from exchange.errors import (
    AttachmentBomb,
    AttachmentInvalid,
    CertificateExpired,
    CertificateNotYetValid,
    CertificateRevoked,
    CertificateUntrusted,
    ContractViolation,
    DoctypeForbidden,
    LienthongError,
    MalformedXml,
    PackageTooLarge,
    SignatureAlgorithm,
    SignatureInvalid,
    SignatureMissing,
    SignatureMultiple,
    SignatureNotXmlDsig,
    SignaturePlacement,
    SignatureReference,
    SignerNotSender,
    UnknownAgency,
)
from exchange.model import Level
from exchange.policy import LEGACY, STRICT, policy_named
from exchange.signing import sign
from exchange.trust import TrustStore, fingerprint
from exchange.xmlsafe import ParseLimits, parse
from tests.conftest import example
from tests.pki import G22, H53, DevPki

DOC = "document-new.edxml"


@pytest.fixture(scope="module")
def signed_doc(pki: DevPki) -> bytes:
    return sign(example(DOC), pki.key(G22))


def refuse(data: bytes, admission: Admission, error: type[LienthongError]) -> str:
    with pytest.raises(error) as caught:
        admit(data, STRICT, admission)
    assert caught.value.message, "every refusal says why"
    assert type(caught.value) is error, f"expected {error.__name__}, got {caught.value!r}"
    return caught.value.message


# --- XML attacks ----------------------------------------------------------------------

XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&xxe;</edXML>"""
XXE_NETWORK = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/leak">]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&xxe;</edXML>"""
XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE edXML [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>"""
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&lol9;</edXML>"""
QUADRATIC = (
    b'<?xml version="1.0"?>\n<!DOCTYPE edXML [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]>\n<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">'
    + b"&a;" * 5_000
    + b"</edXML>"
)


@pytest.mark.parametrize(
    "data",
    [XXE_FILE, XXE_NETWORK, XXE_PARAMETER, BILLION_LAUGHS, QUADRATIC],
    ids=["xxe-file", "xxe-network", "xxe-parameter-entity", "billion-laughs", "quadratic-blowup"],
)
def test_a_dtd_is_refused_before_anything_is_expanded_or_fetched(
    data: bytes, admission: Admission
) -> None:
    message = refuse(data, admission, DoctypeForbidden)
    assert "DOCTYPE" in message


def test_a_doctype_hidden_in_utf16_is_refused(admission: Admission) -> None:
    data = XXE_FILE.replace(b'<?xml version="1.0"?>', b'<?xml version="1.0" encoding="UTF-16"?>')
    refuse(data.decode().encode("utf-16"), admission, DoctypeForbidden)


def test_an_undeclared_entity_reference_is_malformed(admission: Admission) -> None:
    data = b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016">&xxe;</edXML>'
    refuse(data, admission, MalformedXml)


def test_deep_nesting_is_refused_by_the_parser(admission: Admission) -> None:
    depth = 100_000
    data = b"<a>" * depth + b"</a>" * depth
    message = refuse(data, admission, MalformedXml)
    assert "depth" in message.lower() or "nest" in message.lower()


def test_an_oversize_package_is_refused_before_parsing(admission: Admission) -> None:
    cap = admission.parse_limits.max_bytes
    data = example(DOC).replace(b"</edXML>", b"<!--" + b"x" * cap + b"--></edXML>")
    message = refuse(data, admission, PackageTooLarge)
    assert str(cap) in message


def test_the_size_cap_is_configurable(pki: DevPki) -> None:
    tight = Admission(trust=pki.trust, binder=SubjectBinding(), parse_limits=ParseLimits(4096))
    with pytest.raises(PackageTooLarge):
        admit(example(DOC), STRICT, tight)


# --- signature wrapping ---------------------------------------------------------------


def _tree(data: bytes) -> etree._Element:
    return parse(data).getroot()


def _bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _signature(root: etree._Element) -> etree._Element:
    return root.find(f".//{{{DSIG_NS}}}Signature")  # type: ignore[return-value]


def test_the_signed_package_is_admitted_as_strict(signed_doc: bytes, admission: Admission) -> None:
    package = admit(signed_doc, STRICT, admission).package
    assert package.level is Level.STRICT
    assert package.signer is not None
    assert package.signer.subject.startswith(f"CN={G22}")


def test_a_signature_moved_into_the_message_header_is_refused(
    signed_doc: bytes, admission: Admission
) -> None:
    root = _tree(signed_doc)
    kid(header(root), "MessageHeader").append(_signature(root))  # type: ignore[union-attr]
    message = refuse(_bytes(root), admission, SignaturePlacement)
    assert "MessageHeader" in message


def test_signed_content_duplicated_with_other_recipients_is_refused(
    signed_doc: bytes, admission: Admission
) -> None:
    root = _tree(signed_doc)
    head = header(root)
    forged = etree.fromstring(etree.tostring(kid(head, "MessageHeader")))  # type: ignore[arg-type]
    forged.find(".//{*}To/{*}OrganId").text = "000.00.00.H41"  # type: ignore[union-attr]
    head.insert(0, forged)  # type: ignore[union-attr]
    with pytest.raises(ContractViolation) as caught:
        admit(_bytes(root), STRICT, admission)
    assert any("MessageHeader may appear at most 1" in p.message for p in caught.value.problems)


def test_unsigned_content_smuggled_into_an_extension_point_is_refused(
    signed_doc: bytes, admission: Admission
) -> None:
    root = _tree(signed_doc)
    extra = etree.SubElement(header(root), "{urn:example:extension}Forwarded")  # type: ignore[arg-type]
    extra.text = "route to 000.00.00.H41 as well"
    refuse(_bytes(root), admission, SignatureInvalid)


def test_a_second_signature_is_refused(signed_doc: bytes, admission: Admission) -> None:
    root = _tree(signed_doc)
    signature = _signature(root)
    signature.addnext(etree.fromstring(etree.tostring(signature)))
    message = refuse(_bytes(root), admission, SignatureMultiple)
    assert "2 XML-DSig signatures" in message


def test_a_reference_by_id_is_refused(signed_doc: bytes, admission: Admission) -> None:
    root = _tree(signed_doc)
    reference = _signature(root).find(f".//{{{DSIG_NS}}}Reference")
    reference.set("URI", "#MessageHeader")  # type: ignore[union-attr]
    message = refuse(_bytes(root), admission, SignatureReference)
    assert "#MessageHeader" in message


def test_a_package_signed_over_part_of_the_document_is_refused(
    pki: DevPki, admission: Admission
) -> None:
    root = _tree(example(DOC))
    # TraceHeaderList is the one element the contract lets carry foreign attributes (SOAP ids)
    kid(header(root), "TraceHeaderList").set("Id", "th")  # type: ignore[union-attr]
    placeholder = etree.SubElement(header(root), f"{{{DSIG_NS}}}Signature", Id="placeholder")  # type: ignore[arg-type]
    assert placeholder is not None
    signed = XMLSigner(c14n_algorithm="http://www.w3.org/2001/10/xml-exc-c14n#").sign(
        root, key=pki.agencies[G22].key, cert=[pki.agencies[G22].cert], reference_uri="#th"
    )
    refuse(_bytes(signed), admission, SignatureReference)


def test_an_unsigned_package_is_refused_under_strict(admission: Admission) -> None:
    message = refuse(example(DOC), admission, SignatureMissing)
    assert "strict" in message


def test_an_unsigned_package_is_labelled_unsigned_where_policy_allows(admission: Admission) -> None:
    package = admit(example(DOC), policy_named("legacy-or-unsigned"), admission).package
    assert package.level is Level.UNSIGNED
    assert package.signer is None
    assert any("unsigned" in note for note in package.notes)


def test_an_edxml_namespace_signature_is_named_as_not_xmldsig(admission: Admission) -> None:
    data = example(DOC).replace(
        b"</edXML:TraceHeaderList>",
        b"</edXML:TraceHeaderList><edXML:Signature><edXML:SignatureValue>AAAA"
        b"</edXML:SignatureValue></edXML:Signature>",
    )
    message = refuse(data, admission, SignatureNotXmlDsig)
    assert "EdXML102" in message


# --- algorithms -----------------------------------------------------------------------


class LegacySigner(XMLSigner):  # type: ignore[misc]
    """Signs the way today's SDK does (RSA-SHA1), which signxml refuses by default."""

    def check_deprecated_methods(self) -> None:
        return None


def _sign_sha1(data: bytes, pki: DevPki) -> bytes:
    root = _tree(data)
    etree.SubElement(header(root), f"{{{DSIG_NS}}}Signature", Id="placeholder")  # type: ignore[arg-type]
    signer = LegacySigner(
        signature_algorithm="rsa-sha1",
        digest_algorithm="sha1",
        c14n_algorithm="http://www.w3.org/TR/2001/REC-xml-c14n-20010315",
    )
    return _bytes(signer.sign(root, key=pki.agencies[G22].key, cert=[pki.agencies[G22].cert]))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_sha1_is_refused_under_strict_and_labelled_legacy_under_legacy(
    pki: DevPki, admission: Admission
) -> None:
    data = _sign_sha1(example(DOC), pki)
    message = refuse(data, admission, SignatureAlgorithm)
    assert "legacy" in message
    package = admit(data, LEGACY, admission).package
    assert package.level is Level.LEGACY
    assert any("SHA-1" in note for note in package.notes)


# --- certificates ---------------------------------------------------------------------


def test_an_expired_certificate_is_refused(pki: DevPki, admission: Admission) -> None:
    data = sign(example(DOC), pki.issued_key(pki.expired(G22)))
    assert "expired" in refuse(data, admission, CertificateExpired)


def test_a_certificate_not_yet_valid_is_refused(pki: DevPki, admission: Admission) -> None:
    data = sign(example(DOC), pki.issued_key(pki.not_yet_valid(G22)))
    assert "valid only from" in refuse(data, admission, CertificateNotYetValid)


def test_a_certificate_from_an_untrusted_ca_is_refused(pki: DevPki, admission: Admission) -> None:
    data = sign(example(DOC), pki.issued_key(pki.untrusted(G22)))
    assert "an unrelated CA" in refuse(data, admission, CertificateUntrusted)


def test_a_revoked_certificate_is_refused_when_a_crl_is_configured(pki: DevPki) -> None:
    revoked = issue(pki.ca, G22)
    crl = make_crl(pki.ca, [revoked.cert])
    trust = TrustStore.from_pem(pki.ca.cert_pem, (crl,))
    with_crl = Admission(trust=trust, binder=SubjectBinding())
    data = sign(example(DOC), pki.issued_key(revoked))
    assert "revoked" in refuse(data, with_crl, CertificateRevoked)
    # the CRL names only that certificate: the agency's other one still passes
    assert admit(sign(example(DOC), pki.key(G22)), STRICT, with_crl).package.level is Level.STRICT


def test_validity_is_judged_at_the_admission_clock(pki: DevPki, signed_doc: bytes) -> None:
    later = Admission(
        trust=pki.trust,
        binder=SubjectBinding(),
        clock=lambda: datetime.now(UTC) + timedelta(days=5000),
    )
    refuse(signed_doc, later, CertificateExpired)


# --- the signer is the sender ---------------------------------------------------------


def test_a_signer_of_another_agency_is_refused(pki: DevPki, admission: Admission) -> None:
    data = sign(example(DOC), pki.key(H53))  # From is G22, signed by H53
    message = refuse(data, admission, SignerNotSender)
    assert G22 in message
    assert H53 in message


def test_the_directory_binds_by_fingerprint(pki: DevPki, signed_doc: bytes) -> None:
    g22 = pki.agencies[G22].cert
    directory = Directory(
        version=3,
        entries={
            G22: AgencyEntry(G22, fingerprints=frozenset({fingerprint(g22)})),
            H53: AgencyEntry(H53, fingerprints=frozenset({fingerprint(pki.agencies[H53].cert)})),
        },
    )
    ctx = Admission(trust=pki.trust, binder=directory)
    package = admit(signed_doc, STRICT, ctx).package
    assert package.signer is not None
    assert package.signer.bound_by == "directory v3: certificate fingerprint"
    # a certificate whose CN says G22 but which the directory does not list is not G22
    impostor = sign(example(DOC), pki.issued_key(issue(pki.ca, G22)))
    refuse(impostor, ctx, SignerNotSender)


def test_the_directory_binds_by_subject_attributes(pki: DevPki, signed_doc: bytes) -> None:
    directory = Directory(
        version=1,
        entries={G22: AgencyEntry(G22, subject={"CN": r"000\.00\.00\.G22", "O": "lienthong.*"})},
    )
    package = admit(signed_doc, STRICT, Admission(trust=pki.trust, binder=directory)).package
    assert package.signer is not None
    assert package.signer.bound_by == "directory v1: subject attributes"


def test_a_sender_missing_from_the_directory_is_unknown(pki: DevPki, signed_doc: bytes) -> None:
    ctx = Admission(trust=pki.trust, binder=Directory(version=1, entries={}))
    assert G22 in refuse(signed_doc, ctx, UnknownAgency)


# --- tampering ------------------------------------------------------------------------


def test_a_tampered_attachment_is_refused(signed_doc: bytes, admission: Admission) -> None:
    root = _tree(signed_doc)
    payload = root.find(".//{*}ContentTransferEncoded")
    forged = base64.b64encode(_one_entry_zip(b"%PDF-1.4 a different decision")).decode()
    payload.text = forged  # type: ignore[union-attr]
    message = refuse(_bytes(root), admission, SignatureInvalid)
    assert "changed after signing" in message


SUBJECT_NFC = unicodedata.normalize("NFC", "V/v triển khai liên thông văn bản điện tử")
SUBJECT_NFD = unicodedata.normalize("NFD", SUBJECT_NFC)


def test_nfc_and_nfd_subjects_are_different_bytes() -> None:
    assert SUBJECT_NFC != SUBJECT_NFD
    assert SUBJECT_NFC.encode() in example(DOC)


@pytest.mark.parametrize(
    ("signed_form", "forged_form"), [(SUBJECT_NFC, SUBJECT_NFD), (SUBJECT_NFD, SUBJECT_NFC)]
)
def test_a_subject_renormalised_after_signing_does_not_verify(
    signed_form: str, forged_form: str, pki: DevPki, admission: Admission
) -> None:
    original = example(DOC).replace(SUBJECT_NFC.encode(), signed_form.encode())
    signed = sign(original, pki.key(G22))
    assert admit(signed, STRICT, admission).package.subject == signed_form
    forged = signed.replace(signed_form.encode(), forged_form.encode())
    assert forged != signed
    refuse(forged, admission, SignatureInvalid)


# --- attachments ----------------------------------------------------------------------


def _one_entry_zip(content: bytes, name: str = "a.pdf") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


def _with_attachment(payload: bytes) -> bytes:
    root = _tree(example(DOC))
    root.find(".//{*}ContentTransferEncoded").text = base64.b64encode(payload).decode()  # type: ignore[union-attr]
    return _bytes(root)


def _understated(archive: bytes, size: int) -> bytes:
    """The archive with its one entry's uncompressed size, local and central, set to
    ``size``: a bomb that lies about what it holds."""
    changed = bytearray(archive)
    changed[22:26] = size.to_bytes(4, "little")  # the local header
    central = archive.rindex(b"PK\x01\x02")
    changed[central + 24 : central + 28] = size.to_bytes(4, "little")
    return bytes(changed)


def test_a_zip_bomb_is_refused_by_what_its_entry_claims_without_inflating_it(
    pki: DevPki, admission: Admission
) -> None:
    bomb = _one_entry_zip(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 200_000
    data = sign(_with_attachment(bomb), pki.key(G22))
    message = refuse(data, admission, AttachmentBomb)
    assert f"claims {64 * 1024 * 1024} bytes from" in message
    assert "ZIP bomb" in message


def test_a_zip_bomb_that_understates_its_size_is_refused_at_its_claim(
    pki: DevPki, admission: Admission
) -> None:
    """Inflation stops at the size the entry claims: past it the content does not match
    its checksum, and the attachment is refused as damaged, not inflated to the end."""
    bomb = _understated(_one_entry_zip(b"\0" * (64 * 1024 * 1024)), 1000)
    assert zipfile.ZipFile(io.BytesIO(bomb)).infolist()[0].file_size == 1000
    data = sign(_with_attachment(bomb), pki.key(G22))
    refuse(data, admission, AttachmentInvalid)


def test_an_attachment_is_described_by_its_unzipped_content(
    pki: DevPki, admission: Admission
) -> None:
    content = b"%PDF-1.4 quyet dinh so 125"
    data = sign(_with_attachment(_one_entry_zip(content, "8f0c.pdf")), pki.key(G22))
    (attachment,) = admit(data, STRICT, admission).package.attachments
    assert attachment.size == len(content)
    assert attachment.packing == "zip"
    assert attachment.inner_name == "8f0c.pdf"
    assert attachment.content_type == "application/pdf"  # the manifest's, not application/zip
    assert attachment.sha256 == hashlib.sha256(content).hexdigest()
