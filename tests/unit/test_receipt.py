"""Signed delivery receipts: what a node signs, and every way a receipt is refused."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import Certificate
from lxml import etree
from signxml.algorithms import SignatureConstructionMethod
from signxml.signer import XMLSigner

from exchange.devpki import Issued, issue
from exchange.errors import ConfigurationError, ReceiptInvalid, ReceiptPackageMismatch
from exchange.model import Level
from exchange.pades import PdfSignature
from exchange.receipt import (
    DeliveryReceipt,
    ReceiptRecipient,
    ReceiptSigner,
    VerifiedReceipt,
    check_against_package,
    issue_receipt,
    package_sha256,
    read_receipt,
)
from exchange.receipt_xml import receipt_tree
from exchange.signing import EXC_C14N
from exchange.trust import fingerprint
from exchange.xmlsafe import ParseLimits
from tests.pki import DevPki

VN = timezone(timedelta(hours=7))
PACKAGE = b"<edXML>the exact bytes delivered</edXML>"
DELIVERED = datetime(2026, 11, 28, 9, 15, 0, 250000, tzinfo=VN)
NODE, OTHER = "province-h53", "central"


def node_cert(ca: Issued, node: str, key_type: str = "ec") -> Issued:
    """A node certificate valid from 2025 for ten years: the receipts below are dated."""
    since = datetime(2025, 1, 1, tzinfo=UTC)
    return issue(ca, node, role="node", key_type=key_type, not_before=since, days=3650)


@pytest.fixture(scope="module")
def nodes(pki: DevPki) -> dict[str, Issued]:
    return {
        NODE: node_cert(pki.ca, NODE),
        OTHER: node_cert(pki.ca, OTHER),
        "outsider": node_cert(pki.other_ca, NODE),  # the same subject, from another CA
        "rsa-node": node_cert(pki.ca, "rsa-node", "rsa"),
    }


@pytest.fixture(scope="module")
def pinned(nodes: dict[str, Issued]) -> dict[str, Certificate]:
    """What a checker pins: the node certificates of its folder (the outsider is not one)."""
    return {name: nodes[name].cert for name in (NODE, OTHER, "rsa-node")}


def make(**changes: object) -> DeliveryReceipt:
    values: dict[str, object] = {
        "message_id": "0b8e7c8e-5d0b-4c43-9a55-3f1e7a2b9c10",
        "document_id": "15/2026/QĐ-UBND",
        "sender": "000.00.00.G22",
        "node": NODE,
        "level": Level.STRICT,
        "package_sha256": package_sha256(PACKAGE),
        "issued_at": DELIVERED + timedelta(seconds=1),
        "recipients": (
            ReceiptRecipient("000.21.31.H53", DELIVERED),
            ReceiptRecipient("000.22.31.H53", DELIVERED + timedelta(milliseconds=40)),
        ),
    }
    values.update(changes)
    return DeliveryReceipt(**values)  # type: ignore[arg-type]


def signed_by(issued: Issued, receipt: DeliveryReceipt | None = None) -> bytes:
    return issue_receipt(receipt or make(), issued.key, issued.cert)


def refusal(data: bytes, pinned: dict[str, Certificate]) -> str:
    with pytest.raises(ReceiptInvalid) as caught:
        read_receipt(data, pinned)
    assert caught.value.code == "receipt.invalid"
    return caught.value.message


# --- what a node signs, and what a checker reads back ---------------------------------


def test_a_receipt_reads_back_as_signed_with_the_node_named(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = signed_by(nodes[NODE])
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    verified = read_receipt(data, pinned)
    assert verified == VerifiedReceipt(
        receipt=make(),
        signer_subject="CN=province-h53,OU=node,O=lienthong development PKI,C=VN",
        signer_fingerprint=fingerprint(nodes[NODE].cert),
    )
    assert verified.receipt.organ_ids == ("000.21.31.H53", "000.22.31.H53")
    assert verified.receipt.recipients[1].delivered_at == datetime(
        2026, 11, 28, 2, 15, 0, 290000, tzinfo=UTC
    )


def test_the_document_is_the_published_one(nodes: dict[str, Issued]) -> None:
    """The namespace, the order of schemas/receipt.xsd, and what the signature covers."""
    root = etree.fromstring(signed_by(nodes[NODE], make(document_id=None)))
    assert root.tag == "{urn:lienthong:receipt:1}DeliveryReceipt"
    assert [etree.QName(el).localname for el in root] == [
        "MessageId", "Sender", "Node", "Level", "PackageSha256", "IssuedAt", "Recipients",
        "Signature",
    ]  # fmt: skip
    ds = {"ds": "http://www.w3.org/2000/09/xmldsig#"}
    assert root.xpath("string(ds:Signature/ds:SignedInfo/ds:Reference/@URI)", namespaces=ds) == ""
    method = root.xpath("string(//ds:SignatureMethod/@Algorithm)", namespaces=ds)
    assert method == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    assert root.xpath("string(//ds:CanonicalizationMethod/@Algorithm)", namespaces=ds) == EXC_C14N
    assert root.findtext("{urn:lienthong:receipt:1}IssuedAt") == "2026-11-28T09:15:01.250000+07:00"


def test_an_rsa_node_signs_with_rsa_sha256(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = signed_by(nodes["rsa-node"], make(node="rsa-node", document_id=None))
    assert b"xmldsig-more#rsa-sha256" in data
    verified = read_receipt(data, pinned)
    assert verified.receipt.document_id is None
    assert verified.receipt.node == "rsa-node"


def test_a_comment_inside_a_value_does_not_change_what_is_read(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    """Exclusive c14n drops comments, so the signature still holds; the values come from the
    verified element, whole, not cut at the comment."""
    data = signed_by(nodes[NODE]).replace(b">000.21.31.H53<", b">000.21.<!-- x -->31.H53<")
    assert read_receipt(data, pinned).receipt.organ_ids == ("000.21.31.H53", "000.22.31.H53")


def test_a_certificate_expired_since_the_receipt_was_issued_still_verifies(
    pki: DevPki,
) -> None:
    """A receipt is evidence for later: the node certificate must have been valid when the
    receipt was issued, not when someone checks it."""
    then = datetime.now(UTC) - timedelta(days=400)
    old = issue(pki.ca, NODE, role="node", key_type="ec", not_before=then, days=30)
    receipt = make(issued_at=then + timedelta(days=1))
    verified = read_receipt(issue_receipt(receipt, old.key, old.cert), {NODE: old.cert})
    assert verified.receipt == receipt


# --- refused ---------------------------------------------------------------------------

DIGEST_CHANGED = (
    "the signature does not verify: the receipt was changed after node province-h53 signed it "
    "(the digest does not match)"
)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(b">000.22.31.H53<", b">000.22.31.H54<", id="recipient OrganId"),
        pytest.param(b"<PackageSha256>", b"<PackageSha256>0", id="digest"),
        pytest.param(b"T09:15:00.250000+07:00<", b"T08:15:00.250000+07:00<", id="DeliveredAt"),
        pytest.param(b"<Level>strict<", b"<Level>legacy<", id="level"),
    ],
)
def test_a_value_edited_after_signing_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate], before: bytes, after: bytes
) -> None:
    data = signed_by(nodes[NODE])
    assert data.count(before) == 1
    tampered = data.replace(before, after)
    if before == b"<PackageSha256>":  # keep it 64 hex digits: only the value changes
        tampered = re.sub(rb"(<PackageSha256>0[0-9a-f]{63})[0-9a-f]", rb"\1", tampered)
    assert refusal(tampered, pinned) == DIGEST_CHANGED


def test_a_receipt_signed_by_another_nodes_key_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    """It names province-h53, and carries central's valid certificate in KeyInfo: the pinned
    certificate of province-h53 decides, not the one it carries."""
    data = signed_by(nodes[OTHER], make(node=NODE))
    assert refusal(data, pinned) == (
        "the signature does not verify with node province-h53's certificate (it was made with "
        "another key, or its SignedInfo was changed)"
    )


def test_a_receipt_signed_by_a_lookalike_certificate_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    """Same subject (CN=province-h53), another CA's key."""
    message = refusal(signed_by(nodes["outsider"]), pinned)
    assert message.startswith("the signature does not verify with node province-h53's")


def test_a_foreign_certificate_in_key_info_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    """KeyInfo lies outside what is signed: swapping it keeps the signature valid, so what it
    carries must be the pinned certificate."""
    data = signed_by(nodes[NODE])
    root = etree.fromstring(data)
    (carried,) = root.iter("{http://www.w3.org/2000/09/xmldsig#}X509Certificate")
    der = nodes[OTHER].cert.public_bytes(serialization.Encoding.DER)
    carried.text = base64.b64encode(der).decode()
    assert refusal(etree.tostring(root), pinned) == (
        "the certificate in KeyInfo is not the certificate pinned for node province-h53"
    )


def test_a_receipt_of_an_unknown_node_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = signed_by(nodes[NODE], make(node="district-x"))
    assert refusal(data, pinned) == (
        "node district-x is unknown (no certificate): its receipt cannot be checked"
    )


def test_a_receipt_without_its_signature_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    root = etree.fromstring(signed_by(nodes[NODE]))
    root.remove(root[-1])
    assert refusal(etree.tostring(root), pinned) == (
        "the receipt is not signed (it carries no ds:Signature)"
    )


def test_a_second_signature_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    root = etree.fromstring(signed_by(nodes[NODE]))
    recipients = root.find("{urn:lienthong:receipt:1}Recipients")
    assert recipients is not None
    recipients.append(etree.fromstring(etree.tostring(root[-1])))
    assert refusal(etree.tostring(root), pinned) == (
        "the receipt carries 2 ds:Signature elements; exactly one is allowed"
    )


def test_a_reference_to_part_of_the_document_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = signed_by(nodes[NODE]).replace(b'URI=""', b'URI="#part"')
    assert refusal(data, pinned) == 'the signature must have exactly one Reference, with URI=""'


def _sign_anything(root: etree._Element, issued: Issued) -> bytes:
    """What a broken or hostile node could sign: no check of the values."""
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="ecdsa-sha256",
        digest_algorithm="sha256",
        c14n_algorithm=EXC_C14N,
    )
    return etree.tostring(signer.sign(root, key=issued.key, cert=[issued.cert]))


def test_a_signed_receipt_that_breaks_the_schema_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = _sign_anything(receipt_tree(make(package_sha256="ABC123")), nodes[NODE])
    message = refusal(data, pinned)
    assert message.startswith("the receipt does not follow schemas/receipt.xsd: line 7: ")
    assert "Element 'PackageSha256': [facet 'pattern'] The value 'ABC123'" in message


def test_a_signed_receipt_naming_an_agency_twice_is_refused(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    twice = (ReceiptRecipient("000.21.31.H53", DELIVERED),) * 2
    data = _sign_anything(receipt_tree(make(recipients=twice)), nodes[NODE])
    message = refusal(data, pinned)
    assert message.startswith("the receipt does not follow schemas/receipt.xsd: line ")
    assert "Duplicate key-sequence ['000.21.31.H53']" in message


def test_a_node_is_not_given_a_receipt_that_breaks_the_schema(nodes: dict[str, Issued]) -> None:
    with pytest.raises(ValueError, match=r"would not follow schemas/receipt.xsd: line 7: "):
        signed_by(nodes[NODE], make(package_sha256="ABC123"))


def test_a_certificate_not_yet_valid_at_issued_at_is_refused(pki: DevPki) -> None:
    later = issue(pki.ca, NODE, role="node", key_type="ec", not_before=datetime.now(UTC))
    data = issue_receipt(make(issued_at=datetime(2026, 1, 1, tzinfo=VN)), later.key, later.cert)
    message = refusal(data, {NODE: later.cert})
    assert message.startswith(
        "node province-h53's certificate was not valid at the receipt's IssuedAt "
        "(2026-01-01T00:00:00+07:00): "
    )


def test_a_receipt_past_the_size_cap_is_refused_unread(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    data = signed_by(nodes[NODE])
    with pytest.raises(ReceiptInvalid) as caught:
        read_receipt(data, pinned, limits=ParseLimits(max_bytes=1024))
    assert caught.value.message == f"the receipt is {len(data)} bytes; at most 1024 are read"


BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<DeliveryReceipt xmlns="urn:lienthong:receipt:1"><MessageId>&lol2;</MessageId></DeliveryReceipt>
"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            BOMB,
            "the receipt declares a DOCTYPE; DTDs and entities are refused",
            id="entity bomb",
        ),
        pytest.param(
            b'<?xml version="1.0"?>\n<DeliveryReceipt xmlns="urn:lienthong:receipt:1">\n<Node>',
            "the receipt is not well-formed XML (line 3): "
            "Premature end of data in tag Node line 3, line 3, column 7",
            id="truncated",
        ),
        pytest.param(b"", "the receipt is empty (0 bytes)", id="empty"),
        pytest.param(
            b'<edXML xmlns="http://www.mic.gov.vn/TBT/QCVN_102_2016"/>',
            "the root element must be DeliveryReceipt in namespace urn:lienthong:receipt:1, "
            "found {http://www.mic.gov.vn/TBT/QCVN_102_2016}edXML",
            id="not a receipt",
        ),
    ],
)
def test_what_is_not_a_receipt_is_refused_unread(
    pinned: dict[str, Certificate], data: bytes, message: str
) -> None:
    assert refusal(data, pinned) == message


# --- the package it covers ------------------------------------------------------------


def test_check_against_package_takes_the_exact_bytes_only() -> None:
    receipt, other = make(), PACKAGE + b"\n"
    check_against_package(receipt, PACKAGE)
    with pytest.raises(ReceiptPackageMismatch) as caught:
        check_against_package(receipt, other)
    assert caught.value.code == "receipt.package_mismatch"
    assert caught.value.message == (
        f"the package's SHA-256 is {package_sha256(other)}, but the receipt of "
        f"message 0b8e7c8e-5d0b-4c43-9a55-3f1e7a2b9c10 covers {package_sha256(PACKAGE)}"
    )


# --- the node's signer ----------------------------------------------------------------


def test_an_ed25519_node_key_cannot_sign_receipts(nodes: dict[str, Issued]) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(ConfigurationError, match="signxml cannot sign with an Ed25519 key"):
        issue_receipt(make(), key, nodes[NODE].cert)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigurationError, match="node province-h53: receipts are XML-DSig"):
        ReceiptSigner.from_pem(NODE, pem, nodes[NODE].cert_pem)


def test_the_signer_refuses_a_certificate_of_another_key(nodes: dict[str, Issued]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        ReceiptSigner.from_pem(NODE, nodes[NODE].key_pem, nodes[OTHER].cert_pem)
    assert caught.value.message == (
        "node province-h53: the certificate CN=central,OU=node,O=lienthong development PKI,C=VN "
        "does not belong to the node key"
    )


def test_the_signer_signs_only_its_own_receipts(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    signer = ReceiptSigner.from_pem(NODE, nodes[NODE].key_pem, nodes[NODE].cert_pem)
    assert read_receipt(signer.issue(make()), pinned).receipt == make()
    with pytest.raises(ValueError, match="node province-h53 cannot sign a receipt of node central"):
        signer.issue(make(node=OTHER))


def test_a_receipt_needs_a_recipient_and_times_with_offsets() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        make(recipients=())
    with pytest.raises(ValueError, match="IssuedAt needs a time zone offset"):
        make(issued_at=datetime(2026, 11, 28, 9, 0))
    with pytest.raises(ValueError, match="no receipt"):
        make(level=Level.UNVERIFIED)


def test_a_legacy_packages_receipt_carries_the_pdf_signatures_found(
    nodes: dict[str, Issued], pinned: dict[str, Certificate]
) -> None:
    found = (
        PdfSignature(
            "125_UBND-VP.signed.pdf",
            "CN=000.00.00.G09,O=Bộ Nội vụ,C=VN",
            DELIVERED - timedelta(days=1),
            True,
            True,
            "",
        ),
        PdfSignature("phu-luc.pdf", "", None, False, False, "not a readable PDF: no xref"),
    )
    receipt = make(level=Level.LEGACY, pdf_signatures=found)
    data = signed_by(nodes[NODE], receipt)
    root = etree.fromstring(data)
    assert [etree.QName(el).localname for el in root][-2:] == ["PdfSignatures", "Signature"]
    assert read_receipt(data, pinned).receipt.pdf_signatures == found
    # and they are signed like the rest: a verdict turned around is refused
    forged = data.replace(b'valid="false"', b'valid="true"')
    assert "signature" in refusal(forged, pinned).lower()
