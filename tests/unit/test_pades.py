"""PAdES signatures in attached PDFs: found, judged offline against the node's CA roots,
and reported one entry per signature, however broken the PDF."""

from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree

from adapters.devpdf import CONTENT, blank_pdf, sign_pdf
from adapters.pades_pyhanko import pdf_check_for, pdf_signatures
from exchange.admission import Admission, admit
from exchange.attachments import pack_zip
from exchange.extract import attachment_files
from exchange.model import Level
from exchange.pades import PdfSignature, from_record, to_record
from exchange.policy import policy_named
from exchange.signing import sign
from exchange.xmlsafe import parse
from tests.conftest import example
from tests.pki import G22, H53, DevPki


@pytest.fixture(scope="module")
def signed(pki: DevPki) -> tuple[bytes, datetime, datetime]:
    before = datetime.now(UTC)
    pdf = sign_pdf(blank_pdf(), pki.agencies[G22], pki.ca)
    return pdf, before, datetime.now(UTC)


def check(pki: DevPki, *files: tuple[str, bytes], **limits: int) -> tuple[PdfSignature, ...]:
    return pdf_signatures(files, [pki.ca.cert], now=datetime.now(UTC), **limits)


@pytest.mark.parametrize("organ_id", [G22, H53], ids=["rsa", "ecdsa"])
def test_a_pdf_signed_under_a_configured_ca_is_valid_and_trusted(
    pki: DevPki, organ_id: str
) -> None:
    before = datetime.now(UTC)
    pdf = sign_pdf(blank_pdf(), pki.agencies[organ_id], pki.ca)
    after = datetime.now(UTC)
    (sig,) = check(pki, ("125_UBND-VP.signed.pdf", pdf))
    assert (sig.valid, sig.trusted, sig.reason) == (True, True, "")
    assert sig.attachment == "125_UBND-VP.signed.pdf"
    assert sig.signer.startswith(f"CN={organ_id},")
    assert sig.signer == pki.agencies[organ_id].cert.subject.rfc4514_string()
    assert sig.signed_at is not None
    assert before - timedelta(seconds=1) <= sig.signed_at <= after + timedelta(seconds=1)


def test_one_changed_byte_of_signed_content_is_an_integrity_failure(
    pki: DevPki, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    assert pdf.count(CONTENT) == 1
    forged = pdf.replace(CONTENT, CONTENT.replace(b"125", b"126"))
    (sig,) = check(pki, ("a.pdf", forged))
    assert not sig.valid
    assert "integrity" in sig.reason
    assert sig.signer.startswith(f"CN={G22},")


def test_a_signer_under_another_ca_is_intact_but_untrusted(pki: DevPki) -> None:
    pdf = sign_pdf(blank_pdf(), pki.untrusted(G22), pki.other_ca)
    (sig,) = check(pki, ("a.pdf", pdf))
    assert sig.valid
    assert not sig.trusted
    assert sig.reason.startswith("untrusted: ")


def test_no_roots_trust_no_one(pki: DevPki, signed: tuple[bytes, datetime, datetime]) -> None:
    pdf, _, _ = signed
    (sig,) = pdf_signatures([("a.pdf", pdf)], [], now=datetime.now(UTC))
    assert sig.valid
    assert not sig.trusted


def test_an_unsigned_pdf_and_other_files_give_no_entry(pki: DevPki) -> None:
    files = [("a.pdf", blank_pdf()), ("b.doc", b"\xd0\xcf\x11\xe0 a Word file"), ("c", b"")]
    assert check(pki, *files) == ()


@pytest.mark.parametrize(
    "garbage",
    [b"%PDF-1.7 garbage", b"%PDF", b"%PDF-1.4\n" + bytes(range(256)) * 64],
    ids=["short", "header-only", "binary"],
)
def test_garbage_that_starts_like_a_pdf_is_one_invalid_entry(pki: DevPki, garbage: bytes) -> None:
    (sig,) = check(pki, ("a.pdf", garbage))
    assert (sig.attachment, sig.signer, sig.signed_at) == ("a.pdf", "", None)
    assert not sig.valid
    assert not sig.trusted
    assert sig.reason.startswith("not a readable PDF")


def test_a_truncated_signed_pdf_does_not_raise(
    pki: DevPki, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    for cut in (len(pdf) // 3, len(pdf) // 2, len(pdf) - 600):
        (sig,) = check(pki, ("a.pdf", pdf[:cut]))
        assert not sig.valid, cut


def test_the_work_is_bounded_and_what_is_left_is_said(
    pki: DevPki, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    (big,) = check(pki, ("big.pdf", pdf), max_bytes=len(pdf) - 1)
    assert not big.valid
    assert big.reason.startswith("not checked: ")
    twice = sign_pdf(pdf, pki.agencies[H53], pki.ca, field="Signature2")
    first, rest = check(pki, ("a.pdf", twice), max_signatures=1)
    assert first.signer.startswith(f"CN={G22},")
    assert first.valid
    assert first.trusted
    assert not rest.valid
    assert "1 more signature(s)" in rest.reason
    assert [s.signer.split(",")[0] for s in check(pki, ("a.pdf", twice))] == [
        f"CN={G22}",
        f"CN={H53}",
    ]


async def test_it_refuses_to_block_the_event_loop(pki: DevPki) -> None:
    with pytest.raises(RuntimeError, match="worker thread"):
        check(pki, ("a.pdf", blank_pdf()))


def test_a_finding_round_trips_as_a_json_record() -> None:
    sig = PdfSignature(
        "a.pdf", "CN=x,C=VN", datetime(2025, 10, 1, 9, 30, tzinfo=UTC), True, False, "untrusted"
    )
    record = to_record(sig)
    assert record == {
        "attachment": "a.pdf",
        "signer": "CN=x,C=VN",
        "signed_at": "2025-10-01T09:30:00+00:00",
        "valid": True,
        "trusted": False,
        "reason": "untrusted",
    }
    assert from_record(record) == sig
    unreadable = PdfSignature("b.pdf", "", None, False, False, "not a readable PDF")
    assert from_record(to_record(unreadable)) == unreadable
    with pytest.raises(TypeError, match="valid"):
        from_record({**record, "valid": "yes"})
    with pytest.raises(ValueError, match="signed_at"):
        from_record({**record, "signed_at": "yesterday"})


# --- in a package ---------------------------------------------------------------------

MANIFEST_NAME = "125_UBND-VP.signed.pdf"  # the AttachmentName in the example's manifest


def _package_with(payload: bytes) -> bytes:
    root = parse(example("document-new.edxml")).getroot()
    holder = root.find(".//{*}ContentTransferEncoded")
    assert holder is not None
    holder.text = base64.b64encode(payload).decode()
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def test_a_pdf_in_an_attachment_zip_is_found_and_named_by_its_attachment(
    pki: DevPki, admission: Admission, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    data = _package_with(pack_zip("8f0c7a2e-5b1d-4e37-9a61-0c2f3d4e5a6b.pdf", pdf))
    package = admit(data, policy_named("legacy-or-unsigned"), admission).package
    assert package.level is Level.UNSIGNED
    files = list(attachment_files(package, parse(data).getroot()))
    assert files == [(MANIFEST_NAME, pdf)]
    (sig,) = pdf_signatures(files, pki.trust.roots, now=datetime.now(UTC))
    assert (sig.attachment, sig.valid, sig.trusted) == (MANIFEST_NAME, True, True)


def test_only_the_files_the_package_records_are_given(
    admission: Admission, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    data = _package_with(pack_zip("a.pdf", pdf))
    package = admit(data, policy_named("legacy-or-unsigned"), admission).package
    other = _package_with(pack_zip("a.pdf", pdf.replace(CONTENT, CONTENT.upper())))
    assert list(attachment_files(package, parse(other).getroot())) == []


def test_admission_below_strict_reports_the_pdf_signatures_and_strict_does_not_look(
    pki: DevPki, admission: Admission, signed: tuple[bytes, datetime, datetime]
) -> None:
    pdf, _, _ = signed
    data = _package_with(pack_zip("8f0c7a2e-5b1d-4e37-9a61-0c2f3d4e5a6b.pdf", pdf))
    looking = dataclasses.replace(admission, pdf_check=pdf_check_for(pki.trust.roots))
    package = admit(data, policy_named("legacy-or-unsigned"), looking).package
    assert package.level is Level.UNSIGNED
    (sig,) = package.pdf_signatures
    assert (sig.attachment, sig.valid, sig.trusted) == (MANIFEST_NAME, True, True)
    assert "000.00.00.G22" in sig.signer
    signed_package = sign(data, pki.key("000.00.00.G22"))
    assert admit(signed_package, policy_named("strict"), looking).package.pdf_signatures == ()
