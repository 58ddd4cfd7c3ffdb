"""Property tests: hostile or broken input fails only in the ways the core promises.

- ``validate`` never raises; it reports problems, each placed at a path.
- ``xmlsafe.parse`` raises nothing but the node's own errors.
- ``contract.check`` never raises, whatever edXML-shaped tree it is given.
- ``admit`` refuses damaged packages with the node's own errors, and never admits a
  package under a sender other than the one that signed it.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from lxml import etree

from exchange import contract, xmlsafe
from exchange.admission import Admission, admit
from exchange.edxml import NS, header, kid, text
from exchange.errors import ContractViolation, LienthongError, Problem, SenderFault
from exchange.model import Kind, Level, Package
from exchange.policy import STRICT
from exchange.signing import sign
from exchange.validation import Validation, validate
from tests.conftest import EXAMPLES
from tests.pki import DevPki

T = TypeVar("T")

VALID = sorted((EXAMPLES / "valid").glob("*.edxml"))
EXAMPLE_BYTES = [path.read_bytes() for path in VALID]

# Names from edXML (QCVN 102:2016) and, for each, the children it usually has. The tree
# strategy prefers a parent's usual children so that the rule pass is reached in depth.
GRAMMAR: dict[str, tuple[str, ...]] = {
    "edXML": ("edXMLEnvelope", "AttachmentEncoded"),
    "edXMLEnvelope": ("edXMLHeader", "edXMLBody"),
    "edXMLHeader": ("MessageHeader", "TraceHeaderList", "Status", "Signature"),
    "MessageHeader": (
        "From",
        "To",
        "DocumentId",
        "Code",
        "PromulgationInfo",
        "Subject",
        "Content",
        "DueDate",
        "OtherInfo",
        "ResponseFor",
        "StatusCode",
        "Timestamp",
        "Description",
        "StaffInfo",
    ),
    "Status": ("From", "ResponseFor", "StatusCode", "Timestamp", "Description", "StaffInfo"),
    "From": ("OrganId", "OrganName", "OrganizationInCharge", "Email"),
    "To": ("OrganId", "OrganName", "OrganizationInCharge"),
    "Code": ("CodeNumber", "CodeNotation"),
    "PromulgationInfo": ("Place", "PromulgationDate"),
    "OtherInfo": ("Priority",),
    "ResponseFor": ("DocumentId", "OrganId", "Code", "PromulgationDate"),
    "TraceHeaderList": ("TraceHeader", "Bussiness"),
    "TraceHeader": ("OrganId", "Timestamp"),
    "Bussiness": (
        "BussinessDocType",
        "DocumentId",
        "BussinessDocReason",
        "Paper",
        "BussinessDocumentInfo",
        "ReplacementInfoList",
    ),
    "BussinessDocumentInfo": ("DocumentInfo", "DocumentReceiver", "ReceiverList"),
    "ReceiverList": ("Receiver",),
    "Receiver": ("OrganId", "ReceiverType"),
    "ReplacementInfoList": ("ReplacementInfo",),
    "ReplacementInfo": ("DocumentId", "OrganIdList"),
    "OrganIdList": ("OrganId",),
    "edXMLBody": ("edXMLManifest",),
    "edXMLManifest": ("Reference",),
    "Reference": ("ContentId", "ContentType", "AttachmentName", "Description"),
    "AttachmentEncoded": ("Attachment",),
    "Attachment": ("ContentId", "AttachmentName", "ContentType", "ContentTransferEncoded"),
}
EDXML_NAMES = tuple(sorted({name for kids in GRAMMAR.values() for name in kids} | set(GRAMMAR)))
FOREIGN_TAGS = (
    "{http://www.w3.org/2000/09/xmldsig#}Signature",
    "{urn:example:other}OrganId",
    "Attachment",  # no namespace at all
)
ANY_TAG = (*(f"{{{NS}}}{name}" for name in EDXML_NAMES), *FOREIGN_TAGS)

# Values that sit on the edges of the rule pass's formats.
EDGE_TEXTS = (
    "",
    " ",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "-1",
    "007",
    "99999999999999999999999",
    "\u0663",  # ARABIC-INDIC DIGIT THREE: int() reads it as 3
    "01",
    "06",
    "13",
    "16",
    "99",
    "000.00.00.G22",
    "000.21.31.H53",
    "28.22.H17",
    "vxp.saas.03",
    "x" * 40,
    "null",
    "2026/11/20",
    "2026/02/30",
    "20/11/2026",
    "2026-11-20",
    "2026/11/20 09:15:00",
    "2026/11/20 25:61:61",
    "cid:",
    "cid:a",
    "cid:8f0c7a2e-5b1d-4e37-9a61-0c2f3d4e5a6b",
    "a",
    "!!! not base64 !!!",
    "UEsDBBQAAAAIAA==",  # a ZIP header, cut short
    "UEsDBAo=",
    "AAAA",
)


XML_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn", "Co")),
        st.sampled_from("\t\n\r <>&\"'"),
    ),
    max_size=30,
)
TEXTS = st.one_of(st.none(), st.sampled_from(EDGE_TEXTS), XML_TEXT)

# Byte strings that mean something to an XML parser, for insertion.
XML_TOKENS = (
    b"<",
    b">",
    b"&",
    b"/",
    b'"',
    b"=",
    b"</",
    b"/>",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<?",
    b"?>",
    b"&amp;",
    b"&#0;",
    b"&#x110000;",
    b"&undefined;",
    b"<!DOCTYPE edXML>",
    b'<!DOCTYPE edXML [<!ENTITY x "y">]>',
    b"<!ENTITY x SYSTEM 'file:///etc/passwd'>",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3",
    b"\xe2\x82",
    b'xmlns="urn:x"',
    b"edXML:",
    b"\r",
)


# --- strategies -----------------------------------------------------------------------
#
# What is drawn never depends on the data being damaged: positions are drawn as fractions
# and items as numbers modulo the count. The examples change as the contract grows and
# the test keys (so the signed bytes) are new each session; a saved failing example must
# still replay as the same sequence of draws.

SCALE = 1 << 16


def pick(draw: Callable[[st.SearchStrategy[int]], int], items: Sequence[T]) -> T:
    return items[draw(st.integers(min_value=0, max_value=SCALE - 1)) % len(items)]


@st.composite
def byte_mutants(draw: st.DrawFn, sources: Sequence[bytes] = ()) -> bytes:
    """A valid example damaged by bit flips, deletions, insertions and truncation."""
    data = bytearray(pick(draw, sources or EXAMPLE_BYTES))
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        op = draw(st.sampled_from(("flip", "delete", "insert", "truncate")))
        pos = draw(st.integers(min_value=0, max_value=SCALE)) * len(data) // SCALE
        if op == "flip":
            mask = draw(st.integers(min_value=1, max_value=255))
            if pos < len(data):
                data[pos] ^= mask
        elif op == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=64))]
        elif op == "insert":
            data[pos:pos] = draw(
                st.one_of(st.sampled_from(XML_TOKENS), st.binary(min_size=1, max_size=16))
            )
        else:
            del data[pos:]
    return bytes(data)


def _mutate_tree(draw: st.DrawFn, root: etree._Element) -> None:
    """Damage a parsed example while keeping it well-formed, in place."""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        target = pick(draw, list(root.iter(etree.Element)))
        parent = target.getparent()
        op = draw(st.sampled_from(("text", "text", "remove", "duplicate", "rename", "add")))
        if op == "text":
            target.text = draw(TEXTS)
        elif op == "remove" and parent is not None:
            parent.remove(target)
        elif op == "duplicate" and parent is not None:
            target.addnext(copy.deepcopy(target))
        elif op == "rename":
            target.tag = f"{{{NS}}}{draw(st.sampled_from(EDXML_NAMES))}"
        elif op == "add":
            child = etree.SubElement(target, f"{{{NS}}}{draw(st.sampled_from(EDXML_NAMES))}")
            child.text = draw(TEXTS)


@st.composite
def tree_mutants(draw: st.DrawFn) -> bytes:
    """A valid example with elements retexted, removed, duplicated, renamed or added."""
    root = etree.fromstring(pick(draw, EXAMPLE_BYTES))
    _mutate_tree(draw, root)
    out: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return out


MAX_ELEMENTS = 30
MAX_DEPTH = 8
# Paths below edXML that a tree may be made to contain, so that random trees also reach
# the status rules, the business rules and the attachment rules.
SPINES = (
    (),
    ("edXMLEnvelope", "edXMLHeader", "MessageHeader"),
    ("edXMLEnvelope", "edXMLHeader", "MessageHeader", "StatusCode"),
    ("edXMLEnvelope", "edXMLHeader", "Status"),
    ("edXMLEnvelope", "edXMLHeader", "TraceHeaderList", "Bussiness"),
    ("edXMLEnvelope", "edXMLBody", "edXMLManifest", "Reference"),
    ("AttachmentEncoded", "Attachment"),
)


@st.composite
def edxml_trees(draw: st.DrawFn) -> etree._Element:
    """Any well-formed tree of edXML elements, with text, comments and strays."""
    budget = [MAX_ELEMENTS]

    def tag_for(parent: etree._Element | None) -> str:
        usual = GRAMMAR.get(etree.QName(parent).localname, ()) if parent is not None else ()
        if parent is not None and etree.QName(parent).namespace != NS:
            usual = ()
        if usual and draw(st.integers(min_value=0, max_value=3)):
            return f"{{{NS}}}{draw(st.sampled_from(usual))}"
        return draw(st.sampled_from(ANY_TAG))

    def build(tag: str, depth: int, spine: tuple[str, ...] = ()) -> etree._Element:
        budget[0] -= 1
        el = etree.Element(tag)
        if spine:
            el.append(build(f"{{{NS}}}{spine[0]}", depth + 1, spine[1:]))
        el.text = draw(TEXTS)
        extra = draw(st.integers(min_value=0, max_value=19))
        if extra == 0:
            el.set(draw(st.sampled_from(("version", "Id", "URI"))), draw(XML_TEXT))
        elif extra == 1:
            el.append(etree.Comment(draw(st.sampled_from(("", " note ", "a-b")))))
        elif extra == 2 and depth > 0:
            el.tail = draw(TEXTS)  # mixed content; a root's tail would not be well-formed
        usual = etree.QName(el).namespace == NS and etree.QName(el).localname in GRAMMAR
        count = draw(st.integers(min_value=0, max_value=4 if usual else 1))
        for _ in range(count):
            if budget[0] <= 0 or depth >= MAX_DEPTH:
                break
            el.append(build(tag_for(el), depth + 1))
        return el

    if draw(st.integers(min_value=0, max_value=3)):
        return build(f"{{{NS}}}edXML", 0, draw(st.sampled_from(SPINES)))
    return build(tag_for(None), 0)


RANDOM_BYTES = st.one_of(
    st.binary(max_size=512),
    st.text(max_size=200).map(lambda s: s.encode("utf-8")),
    st.lists(
        st.one_of(st.sampled_from(XML_TOKENS), st.sampled_from([b"edXML", b"a", b" "])),
        max_size=30,
    ).map(b"".join),
)


# --- helpers --------------------------------------------------------------------------


def assert_well_placed(problems: Sequence[Problem]) -> None:
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.message, problem
        assert problem.path.startswith("/"), problem
        assert problem.severity in {"error", "warning"}, problem


def assert_validation(report: object) -> None:
    assert isinstance(report, Validation)
    event("valid" if report.ok else f"invalid: {report.errors[0].code}")
    assert_well_placed(report.problems)
    assert report.ok == (not any(p.severity == "error" for p in report.problems))


def attempt(call: Callable[[], T]) -> tuple[T | None, LienthongError | None]:
    """Run ``call``; the node's own errors come back as a value, anything else propagates."""
    try:
        return call(), None
    except LienthongError as exc:
        return None, exc


def assert_refused_by_sender_fault(refusal: LienthongError) -> None:
    assert isinstance(refusal, SenderFault), refusal
    assert refusal.message
    assert refusal.code
    event(f"refused: {refusal.code}")


def sender_of(data: bytes) -> str:
    head = header(etree.fromstring(data))
    block = kid(head, "MessageHeader")
    if block is None:
        block = kid(head, "Status")
    organ = text(kid(block, "From"), "OrganId")
    assert organ is not None
    return organ


def without_transport(package: Package) -> Package:
    """The package minus what depends on the exact bytes received."""
    return dataclasses.replace(package, digest="", size=0)


# --- (a) validate never raises --------------------------------------------------------


def test_the_examples_are_there_and_valid() -> None:
    assert len(EXAMPLE_BYTES) >= 10
    for data in EXAMPLE_BYTES:
        assert validate(data).ok


@settings(max_examples=250, deadline=None)
@given(RANDOM_BYTES)
def test_validate_never_raises_on_random_bytes(data: bytes) -> None:
    report = validate(data)
    assert_validation(report)
    if not data.strip():
        assert not report.ok


@settings(max_examples=250, deadline=None)
@given(byte_mutants())
def test_validate_never_raises_on_damaged_examples(data: bytes) -> None:
    assert_validation(validate(data))


@settings(max_examples=200, deadline=None)
@given(tree_mutants(), st.booleans())
def test_validate_never_raises_on_reshaped_examples(data: bytes, strict: bool) -> None:
    assert_validation(validate(data, strict=strict))


# --- (b) parse raises only the node's errors ------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.one_of(RANDOM_BYTES, byte_mutants()))
def test_parse_raises_only_sender_faults(data: bytes) -> None:
    tree, refusal = attempt(lambda: xmlsafe.parse(data))
    if refusal is not None:
        assert_refused_by_sender_fault(refusal)
        return
    event("parsed")
    assert tree is not None
    root = tree.getroot()
    assert isinstance(root.tag, str)
    assert data
    assert not tree.docinfo.doctype
    assert tree.docinfo.internalDTD is None


# --- (c) contract.check never raises --------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(edxml_trees(), st.booleans())
def test_contract_check_never_raises_on_edxml_trees(root: etree._Element, strict: bool) -> None:
    kind, problems = contract.check(root, strict=strict)
    assert kind in (Kind.EDOC, Kind.STATUS)
    assert_well_placed(problems)
    assert problems == sorted(problems, key=lambda p: (p.line or 0, p.path))
    if etree.QName(root).localname != "edXML" or etree.QName(root).namespace != NS:
        assert [p.code for p in problems] == ["contract.schema"]
    errors = [p for p in problems if p.severity == "error"]
    event(f"{kind}: {len(errors)} error(s)" if len(errors) < 3 else f"{kind}: 3+ errors")
    if errors:
        with pytest.raises(ContractViolation) as caught:
            contract.enforce(root, strict=strict)
        assert list(caught.value.problems) == errors
    else:
        assert contract.enforce(root, strict=strict) == (kind, problems)


def _placeless(problems: Sequence[Problem]) -> list[tuple[str, str, str, str]]:
    return sorted((p.path, p.message, p.code, p.severity) for p in problems)


@settings(max_examples=150, deadline=None)
@given(edxml_trees())
def test_contract_check_judges_a_tree_the_same_once_serialised(root: etree._Element) -> None:
    data = etree.tostring(root)
    kind, problems = contract.check(root)
    reparsed_kind, reparsed_problems = contract.check(xmlsafe.parse(data).getroot())
    assert reparsed_kind is kind
    assert _placeless(reparsed_problems) == _placeless(problems)
    assert all(p.line is not None for p in reparsed_problems if p.path != "/")
    assert_validation(validate(data))


# --- (d) admission refuses damage with the node's errors ------------------------------


@pytest.fixture(scope="module")
def signed_examples(pki: DevPki, admission: Admission) -> list[tuple[bytes, Package]]:
    """Each example signed by its sender, with the package admission reads from it."""
    result = []
    for data in EXAMPLE_BYTES:
        signed = sign(data, pki.key(sender_of(data)))
        result.append((signed, without_transport(admit(signed, STRICT, admission).package)))
    return result


@settings(max_examples=200, deadline=None)
@given(data=st.one_of(byte_mutants(), tree_mutants()))
def test_admit_refuses_damaged_unsigned_examples(admission: Admission, data: bytes) -> None:
    admitted, refusal = attempt(lambda: admit(data, STRICT, admission))
    assert admitted is None, "an unsigned package was admitted under the strict policy"
    assert refusal is not None
    assert_refused_by_sender_fault(refusal)


# Signed examples differ from session to session (fresh keys), so examples saved by an
# earlier session cannot be replayed: these two properties keep no example database.
@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(st.data())
def test_admit_on_damaged_signed_examples_refuses_or_reads_the_same_package(
    signed_examples: list[tuple[bytes, Package]], admission: Admission, data: st.DataObject
) -> None:
    signed, expected = pick(data.draw, signed_examples)
    damaged = data.draw(byte_mutants([signed]))
    admitted, refusal = attempt(lambda: admit(damaged, STRICT, admission))
    if refusal is not None:
        assert_refused_by_sender_fault(refusal)
        return
    event("admitted")
    assert admitted is not None
    # Only damage the signature does not cover (whitespace the parser normalises, junk in
    # KeyInfo's base64) may pass, and then the package must be the one that was signed.
    assert without_transport(admitted.package) == expected


@settings(max_examples=150, deadline=None, database=None)
@given(st.data())
def test_admit_on_reshaped_then_signed_examples_binds_the_signer(
    pki: DevPki, admission: Admission, data: st.DataObject
) -> None:
    source = pick(data.draw, EXAMPLE_BYTES)
    signer = sender_of(source)
    root = etree.fromstring(source)
    _mutate_tree(data.draw, root)
    signed, refusal = attempt(lambda: sign(etree.tostring(root), pki.key(signer)))
    admitted = None
    if signed is not None:
        admitted, refusal = attempt(lambda: admit(signed, STRICT, admission))
    if refusal is not None:
        assert_refused_by_sender_fault(refusal)
        return
    event("admitted")
    assert admitted is not None
    assert admitted.package.level is Level.STRICT
    assert admitted.package.sender.organ_id == signer
    assert admitted.package.signer is not None


# --- Unicode digits are not ASCII digits ----------------------------------------------


def _with_business_doc_type(value: str) -> bytes:
    data = (EXAMPLES / "valid" / "document-new.edxml").read_bytes()
    old = b"<edXML:BussinessDocType>0</edXML:BussinessDocType>"
    assert old in data
    return data.replace(old, f"<edXML:BussinessDocType>{value}</edXML:BussinessDocType>".encode())


@pytest.mark.parametrize(
    "digit", ["\u00b2", "\u2460", "\u0663"], ids=["superscript-two", "circled-one", "arabic-three"]
)
def test_validate_reports_a_non_ascii_digit_as_a_problem(digit: str) -> None:
    report = validate(_with_business_doc_type(digit))
    assert not report.ok
    assert [p.code for p in report.errors] == ["contract.format"]


def test_admit_refuses_a_non_decimal_digit_with_a_sender_fault(
    pki: DevPki, admission: Admission
) -> None:
    signed = sign(_with_business_doc_type("\u00b2"), pki.key("000.00.00.G22"))
    with pytest.raises(SenderFault):
        admit(signed, STRICT, admission)
