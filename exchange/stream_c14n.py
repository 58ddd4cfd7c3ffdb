"""Canonical XML written as the parse goes: Canonical XML 1.0 and Exclusive XML
Canonicalization 1.0, with or without comments, of a whole document or of a whole
document minus subtrees the caller leaves out (the enveloped signature).

The canonicaliser is an ``Events`` consumer (``stream_parse``). It keeps the element
stack with each level's in-scope namespaces, and what its output ancestors rendered;
nothing else. Text goes out as it comes, escaped with ``str.replace`` (a C scan that
returns its input when there is nothing to escape) and encoded in one piece, so a base64
text of hundreds of MiB costs a few passes of C per MiB and no memory.

What the spec asks, and where it happens here:
- namespace declarations: inclusive renders a declaration when the element's in-scope
  value differs from its parent's (``xmlns=""`` only to undo a non-empty default);
  exclusive renders the prefixes the element and its attributes visibly use, and those
  of the InclusiveNamespaces PrefixList in scope, when the nearest output ancestor did
  not render the same value; both sort declarations by prefix, the default first;
- attributes sorted by namespace URI, then local name; values escaped (``& < "`` and
  TAB, LF, CR as character references);
- text escaped (``& < >`` and CR); the parser has already turned CRLF into LF, CDATA
  into text, and character and predefined entity references into characters;
- comments (only ``with_comments``) and PIs: inside the document element as they are,
  outside it with a newline after those before it and before those after it; no
  whitespace outside the document element; empty elements as a start and end tag.
- xml:* attributes are inherited by an element in c14n 1.0 only from omitted
  ancestors: leaving out whole subtrees omits no ancestor of an output element, so
  there is nothing to inherit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from exchange.errors import SignatureAlgorithm
from exchange.policy import (
    C14N_11,
    C14N_EXCLUSIVE,
    C14N_EXCLUSIVE_COMMENTS,
    C14N_INCLUSIVE,
    C14N_INCLUSIVE_COMMENTS,
)
from exchange.stream_parse import Attr, Name, StreamParser, pump
from exchange.xmlsafe import ParseLimits

XML_NS = "http://www.w3.org/XML/1998/namespace"
FLUSH_AT = 256 * 1024


@dataclass(frozen=True)
class C14nMethod:
    exclusive: bool = False
    with_comments: bool = False
    inclusive_prefixes: frozenset[str] = frozenset()
    """For exclusive c14n, the PrefixList ("" stands for ``#default``)."""

    @classmethod
    def from_uri(cls, uri: str, prefix_list: str | None = None) -> C14nMethod:
        if uri in (C14N_INCLUSIVE, C14N_11):  # 1.1 differs from 1.0 only in subsets
            return cls()
        if uri == C14N_INCLUSIVE_COMMENTS:
            return cls(with_comments=True)
        if uri in (C14N_EXCLUSIVE, C14N_EXCLUSIVE_COMMENTS):
            prefixes = frozenset("" if p == "#default" else p for p in (prefix_list or "").split())
            return cls(True, uri == C14N_EXCLUSIVE_COMMENTS, prefixes)
        raise SignatureAlgorithm(f"canonicalisation {uri!r} is not supported")

    @property
    def lxml_args(self) -> dict[str, object]:
        """The same method as arguments of ``etree.tostring(..., method="c14n")``."""
        return {
            "exclusive": self.exclusive,
            "with_comments": self.with_comments,
            "inclusive_ns_prefixes": sorted(
                "#default" if p == "" else p for p in self.inclusive_prefixes
            )
            or None,
        }


def escape_text(data: str) -> str:
    if "&" in data:
        data = data.replace("&", "&amp;")
    if "<" in data:
        data = data.replace("<", "&lt;")
    if ">" in data:
        data = data.replace(">", "&gt;")
    if "\r" in data:
        data = data.replace("\r", "&#xD;")
    return data


_ATTR_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", '"': "&quot;", "\t": "&#x9;", "\n": "&#xA;", "\r": "&#xD;"}
)


def escape_attr(value: str) -> str:
    return value.translate(_ATTR_ESCAPES)


def _qname(prefix: str, local: str) -> str:
    return f"{prefix}:{local}" if prefix else local


class Canonicalizer:
    """Writes the canonical form of the events it is given to ``write`` (bytes, UTF-8).

    Feed it every event of the document, except those of subtrees to leave out
    (not their start, not their end, nothing in between); then ``close``.
    """

    def __init__(self, method: C14nMethod, write: Callable[[bytes], object]) -> None:
        self.method = method
        self._write = write
        self._parts: list[str] = []
        self._size = 0
        # per open element: its qualified name, its in-scope namespaces, and (exclusive)
        # what the output ancestors have rendered, each shared with the parent when equal
        self._names: list[str] = []
        self._scopes: list[dict[str, str]] = [{"": "", "xml": XML_NS}]
        self._rendered: list[dict[str, str]] = [{"": ""}]
        self._after_root = False

    def _out(self, piece: str) -> None:
        self._parts.append(piece)
        self._size += len(piece)
        if self._size >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._parts:
            self._write("".join(self._parts).encode("utf-8"))
            self._parts.clear()
            self._size = 0

    def start(self, name: Name, attrs: list[Attr], declared: list[tuple[str, str]]) -> None:
        parent_scope = self._scopes[-1]
        scope = parent_scope
        if declared:
            scope = dict(parent_scope)
            scope.update(declared)
        self._scopes.append(scope)
        if self.method.exclusive:
            decls = self._exclusive_decls(name, attrs, scope)
        else:
            decls = sorted((p, u) for p, u in declared if parent_scope.get(p, "") != u)
        _uri, local, prefix = name
        qname = _qname(prefix, local)
        self._names.append(qname)
        pieces = ["<", qname]
        for p, u in decls:
            # libxml2 (lxml, signxml, xmlsec1) writes namespace URIs unescaped: so do we
            pieces.append(f' xmlns:{p}="{u}"' if p else f' xmlns="{u}"')
        if attrs:
            for _a_uri, a_local, a_prefix, value in sorted(attrs, key=_attr_key):
                pieces.append(f' {_qname(a_prefix, a_local)}="')
                pieces.append(escape_attr(value))
                pieces.append('"')
        pieces.append(">")
        self._out("".join(pieces))

    def _exclusive_decls(
        self, name: Name, attrs: list[Attr], scope: dict[str, str]
    ) -> list[tuple[str, str]]:
        rendered = self._rendered[-1]
        used = {name[2]}
        used.update(a[2] for a in attrs if a[2])
        # "#default" in the PrefixList changes nothing in libxml2's exclusive c14n as lxml
        # (and so signxml) calls it; it is ignored here too, for the same verdicts
        used.update(p for p in self.method.inclusive_prefixes if p and p in scope)
        used.discard("xml")
        decls = [(p, scope.get(p, "")) for p in used if rendered.get(p, "") != scope.get(p, "")]
        if decls:
            rendered = dict(rendered)
            rendered.update(decls)
            decls.sort()
        self._rendered.append(rendered)
        return decls

    def end(self) -> None:
        self._out(f"</{self._names.pop()}>")
        self._scopes.pop()
        if self.method.exclusive:
            self._rendered.pop()
        if not self._names:
            self._after_root = True

    def text(self, data: str) -> None:
        if not self._names:
            return  # whitespace outside the document element is not output
        if len(data) >= FLUSH_AT:
            self.flush()
            self._write(escape_text(data).encode("utf-8"))
        else:
            self._out(escape_text(data))

    def _outside(self, node: str) -> None:
        if self._names:
            self._out(node)
        elif self._after_root:
            self._out("\n" + node)
        else:
            self._out(node + "\n")

    def comment(self, data: str) -> None:
        if self.method.with_comments:
            self._outside(f"<!--{data}-->")

    def pi(self, target: str, data: str) -> None:
        self._outside(f"<?{target} {data}?>" if data else f"<?{target}?>")

    def close(self) -> None:
        self.flush()


def _attr_key(attr: Attr) -> tuple[str, str]:
    return attr[0], attr[1]


def canonicalize(
    stream: BinaryIO,
    method: C14nMethod,
    write: Callable[[bytes], object],
    limits: ParseLimits | None = None,
) -> int:
    """The canonical form of the whole document read from ``stream``, written to
    ``write`` as it goes; returns the number of bytes read."""
    c14n = Canonicalizer(method, write)
    read = pump(stream, StreamParser(c14n), limits or ParseLimits(max_bytes=2**62))
    c14n.close()
    return read
