"""Real packages from the national axis SDK and a gateway (../shared/samples/real/).

They are read from the shared folder when it is present and skipped when it is not;
they are never copied into this repository. schemas/README.md explains each refusal.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exchange.inspection import inspect_package
from exchange.model import Kind
from exchange.validation import validate
from tests.conftest import REAL_SAMPLES

SAMPLES_DIR = Path(os.environ.get("LIENTHONG_REAL_SAMPLES", REAL_SAMPLES))
SAMPLES = sorted(SAMPLES_DIR.glob("*/*.edxml")) if SAMPLES_DIR.is_dir() else []
pytestmark = pytest.mark.skipif(not SAMPLES, reason=f"no real samples at {SAMPLES_DIR}")

# Where the contract refuses a real file, and the reason schemas/README.md gives.
REFUSED = {
    "edoc.edxml": "xml.malformed",  # undeclared xlink: and edXML: prefixes
    "edoc_new.edxml": "xml.malformed",  # "1212" before the XML declaration
}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_inspect_reads_every_real_sample(path: Path) -> None:
    report = inspect_package(path.read_bytes())
    assert report.package is not None
    package = report.package
    assert package.sender.organ_id
    if path.name.startswith("status"):
        assert report.kind is Kind.STATUS
        assert package.status is not None
        assert package.status.code in path.stem or path.stem == "status"
        assert package.document_id == package.status.response_for_document_id
    else:
        assert report.kind is Kind.EDOC
        assert package.recipients
        assert package.document_id
        assert package.subject


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_validate_accepts_the_samples_that_follow_the_standard(path: Path) -> None:
    report = validate(path.read_bytes())
    expected = REFUSED.get(path.name)
    if expected is None:
        assert report.ok, [p.render() for p in report.errors]
    else:
        assert {p.code for p in report.errors} == {expected}


def test_attachments_of_the_vxp_samples_are_one_entry_zips() -> None:
    path = SAMPLES_DIR / "gateway-traffic" / "874e0f18-90dc-45fb-989a-65401470ba84.edxml"
    if not path.exists():
        pytest.skip("sample not present")
    report = inspect_package(path.read_bytes())
    assert report.package is not None
    (attachment,) = report.package.attachments
    assert attachment.packing == "zip"
    assert attachment.inner_name is not None
    assert attachment.inner_name.endswith(".pdf")
    assert attachment.content_type == "application/pdf"


def test_junk_before_the_declaration_is_read_and_said() -> None:
    path = SAMPLES_DIR / "sdk-resources" / "edoc_new.edxml"
    if not path.exists():
        pytest.skip("sample not present")
    report = inspect_package(path.read_bytes())
    assert any("4 byte(s) before the XML declaration" in note for note in report.reading_notes)
    assert report.signature.kind == "edxml-namespace (not XML-DSig)"
