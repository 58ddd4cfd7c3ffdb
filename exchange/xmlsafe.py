"""Parsing untrusted XML: size cap first, then a parser that cannot be talked into I/O.

The parser never loads a DTD, never resolves an entity and never touches the network.
A document that declares a DOCTYPE at all is refused: edXML has no use for one, and it
is the door for XXE and entity-expansion attacks. ``huge_tree`` stays off, so libxml2's
own limits (text nodes of 10 MB, nesting depth 256) stand as a second line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from exchange.errors import DoctypeForbidden, EmptyPackage, MalformedXml, PackageTooLarge

INLINE_CAP_BYTES = 8 * 1024 * 1024
"""Default cap for a package carried inline (DESIGN §5); larger ones go by claim check."""

# A DOCTYPE can only stand in the prolog, before the root element. We look for it in the
# bytes before parsing so that a hostile internal subset is never handed to libxml2.
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_ROOT_START = re.compile(rb"<[A-Za-z_]")
_PROLOG_SCAN_BYTES = 64 * 1024


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )


@dataclass(frozen=True)
class ParseLimits:
    max_bytes: int = INLINE_CAP_BYTES


def check_size(data: bytes, limits: ParseLimits) -> None:
    if not data:
        raise EmptyPackage("the package is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise PackageTooLarge(
            f"the package is {len(data)} bytes; the inline limit is {limits.max_bytes} bytes "
            "(larger packages travel by claim check)"
        )


def _refuse_doctype(data: bytes) -> None:
    head = data[:_PROLOG_SCAN_BYTES]
    root = _ROOT_START.search(head)
    prolog = head[: root.start()] if root else head
    # UTF-16 input puts NULs between the ASCII bytes; drop them for the scan.
    if b"\x00" in prolog:
        prolog = prolog.replace(b"\x00", b"")
    if _DOCTYPE.search(prolog):
        raise DoctypeForbidden(
            "the document declares a DOCTYPE; edXML packages must not carry a DTD "
            "(DTDs and entities are refused to prevent XXE and entity expansion)"
        )


def parse(data: bytes, limits: ParseLimits | None = None) -> etree._ElementTree:
    """Parse untrusted bytes into a tree, or raise a ``SenderFault`` that says why not."""
    limits = limits or ParseLimits()
    check_size(data, limits)
    _refuse_doctype(data)
    parser = _new_parser()
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        raise MalformedXml(f"not well-formed XML: {exc.msg}", line=line) from exc
    except ValueError as exc:  # e.g. a str with an encoding declaration, or NUL bytes
        raise MalformedXml(f"not well-formed XML: {exc}") from exc
    tree = root.getroottree()
    docinfo = tree.docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None or docinfo.doctype:
        raise DoctypeForbidden("the document declares a DOCTYPE; edXML packages must not carry one")
    for _ in root.iter(etree.Entity):
        raise MalformedXml("the document uses an entity reference; entities are not allowed")
    return tree


def leading_junk(data: bytes) -> int:
    """How many bytes stand before the XML starts (real SDK files carry such junk).

    Returns 0 for a clean document. Only tooling (``inspect``) uses this to read such
    files; admission refuses them as not well-formed.
    """
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    offset = len(data) - len(stripped)
    start = data.find(b"<", offset)
    if start <= offset:
        return 0
    return start
