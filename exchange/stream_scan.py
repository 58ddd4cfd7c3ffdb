"""One pass over a package's bytes: everything admission needs, in memory bounded by
the package's structure, never by its attachments.

While expat reads the bytes (``stream_parse``), the scan
- digests the bytes as received (SHA-256, the package digest) and counts them;
- keeps a *skeleton*: the document as an lxml tree with the text of every
  ContentTransferEncoded replaced by a tiny stand-in ("AAAA" when it was base64, "!"
  when not, nothing when it was blank), for the XSD, the rule pass and the Package;
- decodes each attachment's base64 as it streams (``attachments.Base64Decoder``),
  digesting the decoded bytes, or spooling them to a temporary file when they are a ZIP
  (its directory is at its end), to be described once the pass is over;
- finds the XML-DSig signatures and serialises the one at edXMLEnvelope/edXMLHeader
  as written, with the namespaces in scope there (a few KiB), to be checked afterwards;
- canonicalises the document minus that signature into the digest its Reference names.
  The algorithms are only known once the signature is read, so the events before it
  are kept (up to ``PREFIX_LOG_BYTES``; in edXML that is the envelope's header) and
  replayed into the canonicaliser; after it, events go straight through.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, cast

from lxml import etree

from exchange import attachments as att
from exchange.edxml import DSIG_NS, NS
from exchange.errors import AttachmentInvalid, MalformedXml, PackageTooLarge
from exchange.policy import ALL_C14N
from exchange.stream_c14n import C14nMethod, Canonicalizer, escape_attr, escape_text
from exchange.stream_parse import Attr, Name, StreamParser, pump
from exchange.xmlsafe import ParseLimits

PREFIX_LOG_BYTES = 16 * 1024 * 1024
"""How much of the document before the signature is kept to be canonicalised once the
signature says how."""
MAX_TEXT_NODE = 10_000_000
"""The longest text outside attachments (libxml2's own limit without huge_tree)."""
MAX_SKELETON_TEXT = 32 * 1024 * 1024
"""The most text the skeleton keeps in all (everything but attachment payloads)."""
SPOOL_IN_MEMORY = 1024 * 1024

_PAYLOAD = f"{{{NS}}}ContentTransferEncoded"
_ATTACHMENT_PATH = (f"{{{NS}}}edXML", f"{{{NS}}}AttachmentEncoded", f"{{{NS}}}Attachment")
_HEADER_PATH = ("", f"{{{NS}}}edXMLEnvelope", f"{{{NS}}}edXMLHeader")
_SIGNATURE = f"{{{DSIG_NS}}}Signature"
_DS = f"{{{DSIG_NS}}}"
_EXC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
_DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
}


def digest_plan(signature_xml: str) -> tuple[C14nMethod, str] | str:
    """How the signature's one Reference digests the document: the canonicalisation
    and the hashlib name, read as signxml reads them (the enveloped transform wherever it
    stands; no c14n transform means Canonical XML). A string says why not."""
    wrapper = etree.fromstring(signature_xml.encode("utf-8"), parser=_PARSER)
    reference = wrapper.find(f"{_SIGNATURE}/{_DS}SignedInfo/{_DS}Reference")
    if reference is None:
        return "the signature has no Reference"
    methods = []
    for transform in reference.iterfind(f"{_DS}Transforms/{_DS}Transform"):
        uri = transform.get("Algorithm", "")
        if uri in ALL_C14N:
            listed = transform.find(f"{{{_EXC_NS}}}InclusiveNamespaces[@PrefixList]")
            methods.append(
                C14nMethod.from_uri(uri, listed.get("PrefixList") if listed is not None else None)
            )
    if len(methods) > 1:
        return "a stream is canonicalised once; the Reference asks for several canonicalisations"
    digest = reference.find(f"{_DS}DigestMethod")
    name = _DIGESTS.get(digest.get("Algorithm", "") if digest is not None else "")
    if name is None:
        return "the Reference's DigestMethod is not one the stream computes"
    return (methods[0] if methods else C14nMethod()), name


def clark(name: Name) -> str:
    return f"{{{name[0]}}}{name[1]}" if name[0] else name[1]


class AttachmentStream:
    """One attachment's payload, decoded as it streams: size and SHA-256 of the decoded
    bytes, and, when they start as a ZIP, the bytes themselves in a temporary file."""

    def __init__(self) -> None:
        self.size = 0
        self._sha = hashlib.sha256()
        self._head = b""
        self.spool: BinaryIO | None = None
        self.decoder = att.Base64Decoder(self._take)

    def _take(self, data: bytes) -> None:
        if self.size < len(att.ZIP_MAGIC):
            self._head += data[: len(att.ZIP_MAGIC)]
            if self._head.startswith(att.ZIP_MAGIC[: len(self._head)]) and self.spool is None:
                self.spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # noqa: SIM115
        if self.spool is not None:
            if len(self._head) >= len(att.ZIP_MAGIC) and not self._head.startswith(att.ZIP_MAGIC):
                self.spool.close()
                self.spool = None
            else:
                self.spool.write(data)
        self.size += len(data)
        self._sha.update(data)

    def describe(self, label: str, limits: att.AttachmentLimits) -> att.Decoded:
        """What ``attachments.describe`` says of the decoded bytes (raising its errors)."""
        if not self.decoder.valid:
            raise AttachmentInvalid(f"attachment {label}: ContentTransferEncoded is not base64")
        if self.spool is None:
            return att.Decoded(self.size, self._sha.hexdigest(), "raw", None)
        try:
            return att.describe_file(self.spool, label, limits)
        finally:
            self.spool.close()

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.close()


@dataclass
class Signatures:
    count: int = 0
    misplaced_in: str | None = None
    """The local name of the first signature's parent when it is not the header."""
    xml: str | None = None
    """The signature at the header, serialised as written, wrapped in an element that
    declares the namespaces in scope where it stood."""
    method: C14nMethod | None = None
    digest_name: str | None = None
    digest: bytes | None = None
    unsupported: str | None = None
    """Why the document digest was not computed, when the signature asks for what the
    stream does not do."""


@dataclass
class Scanned:
    skeleton: etree._Element
    sha256: str
    size: int
    signatures: Signatures
    attachments: dict[etree._Element, AttachmentStream] = field(default_factory=dict)

    def close(self) -> None:
        for stream in self.attachments.values():
            stream.discard()


class _Skeleton:
    def __init__(self, line: Callable[[], int]) -> None:
        self._line = line
        self._tb = etree.TreeBuilder()
        self._tags: list[str] = []
        self._node_text = 0
        self._total_text = 0

    def start(
        self, name: Name, attrs: list[Attr], declared: list[tuple[str, str]]
    ) -> etree._Element:
        tag = clark(name)
        nsmap = {p or None: u for p, u in declared if u}
        start: Any = self._tb.start  # lxml-stubs leave out nsmap and the element returned
        element: etree._Element = start(tag, {clark((a[0], a[1], "")): a[3] for a in attrs}, nsmap)
        element.sourceline = min(self._line(), 0xFFFF)  # type: ignore[assignment]
        self._tags.append(tag)
        self._node_text = 0
        return element

    def end(self) -> None:
        self._tb.end(self._tags.pop())
        self._node_text = 0

    def text(self, data: str) -> None:
        self._node_text += len(data)
        self._total_text += len(data)
        if self._node_text > MAX_TEXT_NODE:
            raise MalformedXml(
                f"a text node is longer than {MAX_TEXT_NODE} characters", line=self._line()
            )
        if self._total_text > MAX_SKELETON_TEXT:
            raise PackageTooLarge(
                f"outside its attachments the package carries more than {MAX_SKELETON_TEXT} "
                "characters of text"
            )
        self._tb.data(data)

    def comment(self, data: str) -> None:
        if self._tags:
            self._tb.comment(data)
            self._node_text = 0

    def pi(self, target: str, data: str) -> None:
        if self._tags:
            self._tb.pi(target, data)
            self._node_text = 0

    def close(self) -> etree._Element:
        root: etree._Element = self._tb.close()
        return root


class _SignatureText:
    """The signature subtree serialised as written (declarations where they were)."""

    def __init__(self, scope: dict[str, str]) -> None:
        outer = "".join(
            f' xmlns:{p}="{escape_attr(u)}"' if p else f' xmlns="{escape_attr(u)}"'
            for p, u in sorted(scope.items())
            if u and p != "xml"
        )
        self.parts = [f"<wrapper{outer}>"]
        self.names: list[str] = []

    def start(self, name: Name, attrs: list[Attr], declared: list[tuple[str, str]]) -> None:
        qname = f"{name[2]}:{name[1]}" if name[2] else name[1]
        self.names.append(qname)
        parts = ["<", qname]
        for p, u in declared:
            parts.append(f' xmlns:{p}="{escape_attr(u)}"' if p else f' xmlns="{escape_attr(u)}"')
        for uri, local, prefix, value in attrs:
            del uri
            parts.append(f' {prefix}:{local}="' if prefix else f' {local}="')
            parts.append(escape_attr(value) + '"')
        parts.append(">")
        self.parts.append("".join(parts))

    def end(self) -> None:
        self.parts.append(f"</{self.names.pop()}>")

    def text(self, data: str) -> None:
        self.parts.append(escape_text(data))

    def comment(self, data: str) -> None:
        self.parts.append(f"<!--{data}-->")

    def pi(self, target: str, data: str) -> None:
        self.parts.append(f"<?{target} {data}?>")

    def close(self) -> str:
        return "".join(self.parts) + "</wrapper>"


class DocumentScan:
    """The ``Events`` consumer that does the work described in the module docstring."""

    def __init__(self, line: Callable[[], int], *, attachments: bool) -> None:
        self._skeleton = _Skeleton(line)
        self._describe = attachments
        self.attachments: dict[etree._Element, AttachmentStream] = {}
        self.signatures = Signatures()
        self._path: list[str] = []
        self._first_child: list[set[str]] = [set()]
        self._on_header: list[bool] = [True]
        self._scopes: list[dict[str, str]] = [{}]
        self._payload: tuple[etree._Element, AttachmentStream | att.Base64Decoder] | None = None
        # the signature being read, and how deep inside it we are
        self._sig: _SignatureText | None = None
        self._sig_depth = 0
        # the document digest: events logged until the signature is read, then c14n
        self._log: list[tuple[Any, ...]] | None = []
        self._logged = 0
        self._c14n: Canonicalizer | None = None
        self._hash: Any = None

    # --- events ---------------------------------------------------------------------

    def start(self, name: Name, attrs: list[Attr], declared: list[tuple[str, str]]) -> None:
        tag = clark(name)
        scope = self._scopes[-1]
        if declared:
            scope = {**scope, **dict(declared)}
        first = tag not in self._first_child[-1]
        self._first_child[-1].add(tag)
        depth = len(self._path)
        on_header = self._on_header[-1] and first and depth < 3 and _HEADER_PATH[depth] in (tag, "")
        if tag == _SIGNATURE:
            self._signature_starts(on_header=depth == 3 and self._on_header[-1], scope=scope)
        self._path.append(tag)
        self._first_child.append(set())
        self._on_header.append(on_header)
        self._scopes.append(scope)
        element = self._skeleton.start(name, attrs, declared)
        if tag == _PAYLOAD:
            self._payload_starts(element)
        if self._sig is not None:
            self._sig_depth += 1
            self._sig.start(name, attrs, declared)
        else:
            self._digest(("start", name, attrs, declared))

    def end(self) -> None:
        tag = self._path.pop()
        self._first_child.pop()
        self._on_header.pop()
        self._scopes.pop()
        if tag == _PAYLOAD and self._payload is not None:
            self._payload_ends()
        self._skeleton.end()
        if self._sig is not None:
            self._sig.end()
            self._sig_depth -= 1
            if self._sig_depth == 0:
                self._signature_ends()
        else:
            self._digest(("end",))

    def text(self, data: str) -> None:
        if self._payload is not None:
            sink = self._payload[1]
            (sink.decoder if isinstance(sink, AttachmentStream) else sink).feed(data)
        elif self._path:
            self._skeleton.text(data)
        if self._sig is not None:
            self._sig.text(data)
        else:
            self._digest(("text", data))

    def comment(self, data: str) -> None:
        self._skeleton.comment(data)
        if self._sig is not None:
            self._sig.comment(data)
        else:
            self._digest(("comment", data))

    def pi(self, target: str, data: str) -> None:
        self._skeleton.pi(target, data)
        if self._sig is not None:
            self._sig.pi(target, data)
        else:
            self._digest(("pi", target, data))

    # --- attachments ----------------------------------------------------------------

    def _payload_starts(self, element: etree._Element) -> None:
        if self._describe and tuple(self._path[:-1]) == _ATTACHMENT_PATH:
            stream = AttachmentStream()
            self.attachments[element] = stream
            self._payload = (element, stream)
        else:
            self._payload = (element, att.Base64Decoder())

    def _payload_ends(self) -> None:
        assert self._payload is not None
        _element, sink = self._payload
        decoder = sink.decoder if isinstance(sink, AttachmentStream) else sink
        decoder.close()
        if decoder.content:
            self._skeleton.text("AAAA" if decoder.valid else "!")
        self._payload = None

    # --- the signature ----------------------------------------------------------------

    def _signature_starts(self, *, on_header: bool, scope: dict[str, str]) -> None:
        sigs = self.signatures
        sigs.count += 1
        if sigs.count > 1:
            return
        if not on_header:
            sigs.misplaced_in = self._path[-1].rpartition("}")[2] if self._path else "the root"
            return
        self._sig = _SignatureText(scope)

    def _signature_ends(self) -> None:
        assert self._sig is not None
        self.signatures.xml = self._sig.close()
        self._sig = None
        self._sig_depth = 0
        self._begin_digest()

    def _begin_digest(self) -> None:
        sigs = self.signatures
        assert sigs.xml is not None
        plan = digest_plan(sigs.xml)
        if isinstance(plan, str):
            sigs.unsupported = plan
            self._log = None
            return
        sigs.method, sigs.digest_name = plan
        self._hash = hashlib.new(sigs.digest_name)
        self._c14n = Canonicalizer(sigs.method, self._hash.update)
        log, self._log = self._log, None
        if log is None:
            sigs.unsupported = (
                f"the signature comes after the first {PREFIX_LOG_BYTES} bytes of the "
                "document; a package verified as a stream must carry it in edXMLHeader, "
                "before the body and the attachments"
            )
            self._c14n = None
            return
        for event in log:
            getattr(self._c14n, event[0])(*event[1:])

    def _digest(self, event: tuple[Any, ...]) -> None:
        if self._c14n is not None:
            getattr(self._c14n, event[0])(*event[1:])
        elif self._log is not None and self.signatures.count == 0:
            self._log.append(event)
            self._logged += 64 + sum(len(x) for x in event[1:] if isinstance(x, str))
            if self._logged > PREFIX_LOG_BYTES:
                self._log = None

    def finish(self) -> etree._Element:
        if self._c14n is not None:
            self._c14n.close()
            self.signatures.digest = self._hash.digest()
        return self._skeleton.close()


def scan(
    stream: BinaryIO,
    limits: ParseLimits,
    *,
    size: int | None = None,
    attachments: bool = False,
) -> Scanned:
    """Read a package once; see the module docstring. Parse errors raise as
    ``xmlsafe.parse`` raises them; everything else is for the caller to judge."""
    package_digest = hashlib.sha256()
    document = DocumentScan(lambda: parser.line, attachments=attachments)
    parser = StreamParser(document)
    try:
        read = pump(stream, parser, limits, size=size, observe=package_digest.update)
        skeleton = document.finish()
    except BaseException:
        for pending in document.attachments.values():
            pending.discard()
        raise
    return Scanned(
        skeleton, package_digest.hexdigest(), read, document.signatures, document.attachments
    )
