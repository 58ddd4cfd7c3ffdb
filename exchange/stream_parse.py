"""Parsing untrusted XML as a stream of events, under the rules of ``xmlsafe``.

Expat reads the bytes in chunks and calls back for each start tag, end tag, piece of
text, comment and processing instruction; nothing is kept but the element stack. The
same refusals as ``xmlsafe.parse`` apply: no DOCTYPE anywhere in the bytes (searched
across chunk boundaries, before expat sees them), UTF-8 or UTF-16 only, no entity but
the five predefined ones and character references, nesting at most 256 deep (libxml2's
own limit, which lxml keeps), and the Namespaces in XML rules (expat's namespace
processing refuses unbound and reserved prefixes and duplicate expanded attributes,
as libxml2 does).

Names arrive as ``(namespace, local, prefix)`` (``""`` for none), so a canonicaliser
sees the prefixes as written; namespace declarations arrive with the start tag they sit
on. Text is buffered by expat up to ``TEXT_CHUNK`` characters and handed on in pieces:
a text node of any size streams through.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import BinaryIO, Protocol
from xml.parsers import expat

from exchange.errors import DoctypeForbidden, EmptyPackage, MalformedXml, PackageTooLarge
from exchange.xmlsafe import ParseLimits, refuse_doctype

Name = tuple[str, str, str]
"""(namespace URI, local name, prefix); "" where there is none."""
Attr = tuple[str, str, str, str]
"""(namespace URI, local name, prefix, normalised value)."""

READ_CHUNK = 1024 * 1024
TEXT_CHUNK = 1024 * 1024
MAX_DEPTH = 256
_SEP = "\x01"  # cannot occur in a name or a namespace URI (not an XML character)
_DECLARED_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_ALLOWED_ENCODINGS = {b"utf-8", b"utf8", b"utf-16", b"utf16"}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A namespace name must be a URI reference (RFC 3986), as libxml2 requires it to be.
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_URI = re.compile(
    rf"(?:[A-Za-z][A-Za-z0-9+.\-]*:|(?![^/?#]*:))(?://(?:{_PCHAR}|[\[\]])*)?"
    rf"(?:{_PCHAR}|/)*(?:\?(?:{_PCHAR}|[/?])*)?(?:#(?:{_PCHAR}|[/?])*)?"
)
_DOCTYPE_TAIL = 64  # bytes of one chunk kept to find "<!DOCTYPE" split across two


class Events(Protocol):
    """What a consumer of the stream receives, in document order."""

    def start(self, name: Name, attrs: list[Attr], declared: list[tuple[str, str]]) -> None: ...

    def end(self) -> None: ...

    def text(self, data: str) -> None: ...

    def comment(self, data: str) -> None: ...

    def pi(self, target: str, data: str) -> None: ...


def split_name(raw: str) -> Name:
    parts = raw.split(_SEP)
    if len(parts) == 1:
        return "", raw, ""
    if len(parts) == 2:
        return parts[0], parts[1], ""
    return parts[0], parts[1], parts[2]


class StreamParser:
    """Feeds one document's bytes to expat and its events to ``events``.

    ``line`` is the line of the event being reported (for the consumers that place
    problems). Errors are the ``SenderFault`` that ``xmlsafe.parse`` raises for the same
    bytes: ``MalformedXml``, ``DoctypeForbidden``.
    """

    def __init__(self, events: Events) -> None:
        self._events = events
        self._pending: list[tuple[str, str]] = []
        self._depth = 0
        self._seen = 0
        self._tail = b""
        self._utf16 = False
        p = expat.ParserCreate(namespace_separator=_SEP)
        p.namespace_prefixes = True
        p.ordered_attributes = True
        p.buffer_text = True
        p.buffer_size = TEXT_CHUNK
        p.StartNamespaceDeclHandler = self._declare
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = events.text
        p.CommentHandler = events.comment
        p.ProcessingInstructionHandler = events.pi
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._doctype
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        self._parser = p

    @property
    def line(self) -> int:
        return int(self._parser.CurrentLineNumber)

    def _declare(self, prefix: str | None, uri: str | None) -> None:
        if uri and not _URI.fullmatch(uri):
            name = f"xmlns:{prefix}" if prefix else "xmlns"
            raise MalformedXml(
                f"not well-formed XML: {name}: {uri!r} is not a valid URI", line=self.line
            )
        self._pending.append((prefix or "", uri or ""))

    def _start(self, raw: str, flat: list[str]) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise MalformedXml(
                f"not well-formed XML: elements nest deeper than {MAX_DEPTH}", line=self.line
            )
        attrs = [(*split_name(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]
        declared, self._pending = self._pending, []
        self._events.start(split_name(raw), attrs, declared)

    def _end(self, _raw: str) -> None:
        self._depth -= 1
        self._events.end()

    def _doctype(self, *_args: object) -> None:
        raise DoctypeForbidden("the document declares a DOCTYPE; edXML packages must not carry one")

    def _check_start(self, chunk: bytes) -> None:
        if chunk.startswith(_UTF16_BOMS):
            self._utf16 = True
            return
        body = chunk.removeprefix(b"\xef\xbb\xbf")
        if not body.lstrip(b" \t\r\n").startswith(b"<"):
            raise MalformedXml("the package does not start with '<': edXML is UTF-8 XML", line=1)
        declared = _DECLARED_ENCODING.match(body)
        if declared and declared.group(1).lower() not in _ALLOWED_ENCODINGS:
            raise MalformedXml(
                f"the package declares encoding {declared.group(1).decode()!r}; edXML is UTF-8",
                line=1,
            )

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._seen == 0:
            self._check_start(chunk)
        self._seen += len(chunk)
        searched = chunk.replace(b"\x00", b"") if self._utf16 else chunk
        refuse_doctype(self._tail + searched)
        self._tail = searched[-_DOCTYPE_TAIL:]
        self._parse(chunk, final=False)

    def close(self) -> None:
        self._parse(b"", final=True)

    def _parse(self, chunk: bytes, *, final: bool) -> None:
        try:
            self._parser.Parse(chunk, final)
        except expat.ExpatError as exc:
            message = expat.errors.messages[exc.code] if exc.code else str(exc)
            raise MalformedXml(f"not well-formed XML: {message}", line=exc.lineno) from exc


def pump(
    stream: BinaryIO,
    parser: StreamParser,
    limits: ParseLimits,
    *,
    size: int | None = None,
    observe: Callable[[bytes], object] | None = None,
) -> int:
    """Read ``stream`` to its end into ``parser``; returns the number of bytes read.

    ``size``, when given, is what the sender announced: more bytes than that, or fewer,
    is refused. ``limits.max_bytes`` caps the bytes read either way. ``observe`` sees
    every chunk (e.g. the package digest).
    """
    if size is not None and size > limits.max_bytes:
        raise PackageTooLarge(f"the package is {size} bytes; the limit is {limits.max_bytes} bytes")
    total = 0
    while chunk := stream.read(READ_CHUNK):
        total += len(chunk)
        if total > limits.max_bytes or (size is not None and total > size):
            limit = limits.max_bytes if size is None else min(size, limits.max_bytes)
            raise PackageTooLarge(f"the package runs past {limit} bytes")
        if observe is not None:
            observe(chunk)
        parser.feed(chunk)
    if total == 0:
        raise EmptyPackage("the package is empty (0 bytes)")
    if size is not None and total != size:
        raise MalformedXml(f"the package ended after {total} of the {size} bytes announced")
    parser.close()
    return total
