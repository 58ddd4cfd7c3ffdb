"""Fuzzing the reading of edXML beyond tests/unit/test_properties.py.

test_properties.py shows that parsing, the rule pass and admission refuse damage with the
node's own errors. These properties go on from there:

- reading a Package out of ANY tree (exchange/extract.py and the edxml.py helpers, which
  admission only reaches after the contract) raises nothing but the node's own errors;
- what ``validate`` lets through (the rule pass, then the attachments) can always be
  read: it yields a Package, never a refusal the sender was not told about;
- the same document in UTF-16 (with its byte-order mark) or under another namespace
  prefix is judged exactly as in UTF-8.
"""

from __future__ import annotations

import re

from hypothesis import event, given
from hypothesis import strategies as st
from lxml import etree

from exchange import contract, xmlsafe
from exchange.edxml import NS, message_block, path_of, sender_id
from exchange.errors import LienthongError
from exchange.extract import build_package
from exchange.model import Kind, Level, Package
from exchange.validation import validate
from tests.fuzzing import fuzz, tried
from tests.unit.test_properties import EXAMPLE_BYTES, edxml_trees, pick, tree_mutants


def read(root: etree._Element) -> Package:
    return build_package(
        root,
        kind=contract.detect_kind(root),
        digest="0" * 64,
        size=1,
        level=Level.UNVERIFIED,
        signer=None,
    )


def reparsed(data: bytes | etree._Element) -> etree._Element:
    """The tree as a node would hold it: parsed by the safe parser from bytes."""
    raw = data if isinstance(data, bytes) else etree.tostring(data)
    return xmlsafe.parse(raw).getroot()


TREES = st.one_of(edxml_trees(), tree_mutants())


@fuzz(200)
@given(source=TREES)
def test_fuzz_reading_a_package_from_any_tree_raises_only_our_errors(
    source: bytes | etree._Element,
) -> None:
    tried("parser: reading any tree raises only our errors")
    root = reparsed(source)
    for el in root.iter(etree.Element):
        assert path_of(el).startswith("/")
    message_block(root)
    sender_id(root)
    refusal: LienthongError | None = None
    try:
        read(root)
    except LienthongError as exc:  # anything else fails the test
        refusal = exc
    event(f"refused: {refusal.code}" if refusal else "read")


@fuzz(250)
@given(source=TREES)
def test_fuzz_what_validate_admits_can_be_read(source: bytes | etree._Element) -> None:
    tried("parser: what the rule pass admits can be read")
    raw = source if isinstance(source, bytes) else etree.tostring(source)
    report = validate(raw)  # the contract, then the attachments' decoding
    if not report.ok:
        event("refused by validate")
        return
    root = reparsed(raw)
    kind = report.kind
    package = read(root)
    assert package.kind is kind
    assert package.sender.organ_id == sender_id(root)
    if kind is Kind.EDOC:
        assert package.recipients, "a document the contract passed has nobody to go to"
    event(f"admitted as {kind}")


_PREFIX = re.compile(rb"edXML:|xmlns:edXML=")


@fuzz(60)
@given(data=st.data(), prefix=st.sampled_from((b"e", b"ns0", b"x.y", b"edxml2")))
def test_fuzz_utf16_and_another_prefix_are_judged_as_utf8(
    data: st.DataObject, prefix: bytes
) -> None:
    tried("parser: UTF-16 and other prefixes judged the same")
    original = pick(data.draw, EXAMPLE_BYTES)
    if b"xmlns:edXML=" not in original:
        return
    renamed = _PREFIX.sub(
        lambda m: prefix + b":" if m.group() == b"edXML:" else b"xmlns:" + prefix + b"=",
        original,
    )
    as_utf16 = re.sub(rb"encoding=[\"'][Uu][Tt][Ff]-?8[\"']", b'encoding="UTF-16"', original)
    expected = [(p.code, p.path) for p in validate(original).problems]
    for variant in (renamed, "\ufeff".encode("utf-16-le") + as_utf16.decode().encode("utf-16-le")):
        report = validate(variant)
        assert [(p.code, p.path) for p in report.problems] == expected
    assert NS in original.decode()
