"""The contract's examples as data: each valid file is admitted, each invalid one fails
with the error its name promises (``<code>[@<element>]--<what>.edxml``).

Valid files named ``input-*`` are accepted on input but are not the layout lienthong
emits (a dd/MM/yyyy date, a Bkav-style Status block, ...); the others follow the strict XSD.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.admission import Admission, admit
from exchange.edxml import sender_id
from exchange.model import Kind, Level
from exchange.policy import STRICT
from exchange.signing import sign
from exchange.validation import validate
from exchange.xmlsafe import parse
from tests.conftest import EXAMPLES
from tests.pki import DevPki

VALID = sorted((EXAMPLES / "valid").glob("*.edxml"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.edxml"))


def promise(path: Path) -> tuple[str, str | None]:
    head = path.name.split("--", 1)[0]
    code, _, element = head.partition("@")
    return code, element or None


def sender_of(data: bytes) -> str:
    return sender_id(parse(data).getroot()) or ""


def test_the_examples_cover_every_business_type_and_status_code() -> None:
    names = {p.stem for p in VALID}
    for business in ("new", "revoke", "update", "replace"):
        assert f"document-{business}" in names
    codes = {name.split("-")[1] for name in names if name.startswith("status-")}
    assert codes == {"01", "02", "03", "04", "05", "06", "13", "15", "16"}


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_valid_example_is_admitted_once_signed(
    path: Path, pki: DevPki, admission: Admission
) -> None:
    data = path.read_bytes()
    assert validate(data).ok, validate(data).problems
    if not path.name.startswith("input-"):
        assert validate(data, strict=True).ok, "examples follow the layout we emit"
    signed = sign(data, pki.key(sender_of(data)))
    admitted = admit(signed, STRICT, admission).package
    assert admitted.level is Level.STRICT
    assert admitted.sender.organ_id == sender_of(data)
    assert admitted.kind is (Kind.STATUS if "status" in path.name else Kind.EDOC)


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_example_fails_with_the_promised_error(path: Path) -> None:
    code, element = promise(path)
    report = validate(path.read_bytes())
    assert not report.ok
    matching = [p for p in report.errors if p.code == code]
    assert matching, f"expected {code}, got {[(p.code, p.message) for p in report.errors]}"
    if element is not None:
        last_steps = {p.path.rsplit("/", 1)[-1].split("[")[0] for p in matching}
        assert element in last_steps, f"expected a problem at {element}, got {last_steps}"
    for problem in matching:
        assert problem.message
        assert problem.path.startswith("/")


def test_a_problem_names_line_path_and_expectation() -> None:
    report = validate(
        (EXAMPLES / "invalid" / "contract.format@PromulgationDate--iso-date.edxml").read_bytes()
    )
    (problem,) = report.errors
    assert problem.line == 33
    assert (
        problem.path
        == "/edXML/edXMLEnvelope/edXMLHeader/MessageHeader/PromulgationInfo/PromulgationDate"
    )
    assert problem.message == "PromulgationDate is '2026-11-20'; expected yyyy/MM/dd"


def test_day_month_year_dates_are_read_with_a_warning() -> None:
    data = (
        (EXAMPLES / "valid" / "document-new.edxml")
        .read_bytes()
        .replace(b"2026/12/05", b"05/12/2026")
    )
    report = validate(data)
    assert report.ok
    (warning,) = report.problems
    assert warning.severity == "warning"
    assert "dd/MM/yyyy" in warning.message
