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

# A DOCTYPE may hide behind comments and processing instructions, so the whole input is
# searched, not just its first bytes: a hostile internal subset must never reach libxml2.
# The cost is one pass of a C search over at most 8 MiB; edXML never needs the string
# (attachments are base64, and "<" in text is written &lt;).
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE", re.IGNORECASE)
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ALLOWED_ENCODINGS = {b"utf-8", b"utf8", b"utf-16", b"utf16"}
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


class NoResolver(etree.Resolver):
    """Refuses every external resource: a second line behind the DOCTYPE ban."""

    # lxml calls resolve(url, id, context); lxml-stubs leave out the context
    def resolve(self, system_url: str, public_id: str, context: object) -> object:  # type: ignore[override]
        raise DoctypeForbidden(f"the document asks to load {system_url!r}; nothing is loaded")


def _new_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=False,
        remove_pis=False,
        collect_ids=False,
    )
    parser.resolvers.add(NoResolver())
    return parser


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


def _refuse_other_encodings(data: bytes) -> None:
    """edXML is UTF-8 (or UTF-16 with a byte-order mark); anything else is refused unread,
    so that no encoding can disguise a DOCTYPE from the search below."""
    if data.startswith(_BOMS[1:]):
        return
    body = data.removeprefix(_BOMS[0])
    if not body.lstrip(b" \t\r\n").startswith(b"<"):
        raise MalformedXml("the package does not start with '<': edXML is UTF-8 XML", line=1)
    declared = _DECLARED_ENCODING.match(body)
    if declared and declared.group(1).lower() not in _ALLOWED_ENCODINGS:
        raise MalformedXml(
            f"the package declares encoding {declared.group(1).decode()!r}; edXML is UTF-8",
            line=1,
        )


def refuse_doctype(data: bytes) -> None:
    # UTF-16 input puts NULs between the ASCII bytes; drop them for the search.
    text = data.replace(b"\x00", b"") if b"\x00" in data else data
    if _DOCTYPE.search(text):
        raise DoctypeForbidden(
            "the document declares a DOCTYPE; edXML packages must not carry a DTD "
            "(DTDs and entities are refused to prevent XXE and entity expansion)"
        )


def parse(data: bytes, limits: ParseLimits | None = None) -> etree._ElementTree:
    """Parse untrusted bytes into a tree, or raise a ``SenderFault`` that says why not."""
    limits = limits or ParseLimits()
    check_size(data, limits)
    _refuse_other_encodings(data)
    refuse_doctype(data)
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
