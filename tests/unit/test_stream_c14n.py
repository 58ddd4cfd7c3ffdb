"""The streaming canonicaliser against lxml's (libxml2's) c14n: the same bytes for every
method, on hand-written hostile-but-legal documents and on generated ones."""

from __future__ import annotations

import hashlib
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from exchange.errors import DoctypeForbidden, MalformedXml
from exchange.stream_c14n import C14nMethod, canonicalize

METHODS = [
    C14nMethod(),
    C14nMethod(with_comments=True),
    C14nMethod(exclusive=True),
    C14nMethod(exclusive=True, with_comments=True),
    C14nMethod(exclusive=True, inclusive_prefixes=frozenset({"p", ""})),
    C14nMethod(exclusive=True, inclusive_prefixes=frozenset({"q"})),
]

CORPUS = {
    "redeclared-and-undeclared": b'<r xmlns="urn:d" xmlns:p="urn:p"><p:a xmlns:p="urn:p">'
    b'<b xmlns=""><c xmlns="urn:d"/><d xmlns="urn:other"><e xmlns=""/></d></b></p:a></r>',
    "prefix-rebound-below": b'<p:r xmlns:p="urn:1"><p:a xmlns:p="urn:2"><p:b xmlns:p="urn:1"'
    b' xmlns:q="urn:q" q:x="1"/></p:a></p:r>',
    "unused-declarations": b'<r xmlns:p="urn:p" xmlns:q="urn:q" xmlns:z="urn:z"><a><q:b/></a></r>',
    "xml-attributes": b'<r xml:lang="vi" xml:space="preserve"><a xml:lang="en">'
    b'<b xml:space="default"> t </b></a></r>',
    "xml-namespace-declared": b'<r xmlns:xml="http://www.w3.org/XML/1998/namespace" xml:lang="x"/>',
    "attribute-order": b'<r xmlns:b="urn:a" xmlns:a="urn:b" z="1" a:z="2" b:a="3" a="4" b:z="5"/>',
    "attribute-escapes": b'<r a="&amp;&lt;&gt;&quot;&apos;&#9;&#10;&#13;" b="tab\tnl\ncr\r'
    b'crlf\r\nend" c="\xc3\xa1\xe1\xbb\x87"/>',
    "text-escapes": b"<r>&amp;&lt;&gt;&quot;&apos;&#13;&#10;&#x9;&#x1F600;\r\nline\rcr</r>",
    "cdata": b"<r><![CDATA[<a>&amp;]]>]]&gt;<![CDATA[\r\n]]></r>",
    "outside-root": b'<?xml version="1.0" encoding="UTF-8"?>\n<?a  one ?>\n<!-- c0 -->\n\n'
    b"<r><!-- in --><?in?></r>\n<!-- c1 -->\n<?z?>\n\n",
    "empty-elements": b'<r><a/><b></b><c x="1"/><d>\n</d></r>',
    "deep": b"<a>" * 200 + b"x" + b"</a>" * 200,
    "default-then-prefixed": b'<r xmlns="urn:d"><p:a xmlns:p="urn:d"><b/></p:a></r>',
    "utf16": '<r xmlns:p="urn:p"><p:a>ư</p:a></r>'.encode("utf-16"),
    "bom": b"\xef\xbb\xbf<r>a</r>",
}


def ours(data: bytes, method: C14nMethod) -> bytes:
    out = io.BytesIO()
    canonicalize(io.BytesIO(data), method, out.write)
    return out.getvalue()


def lxmls(data: bytes, method: C14nMethod) -> bytes:
    tree = etree.fromstring(data).getroottree()
    result: bytes = etree.tostring(tree, method="c14n", **method.lxml_args)  # type: ignore[call-overload]
    return result


@pytest.mark.parametrize("method", METHODS, ids=repr)
@pytest.mark.parametrize("name", sorted(CORPUS))
def test_the_corpus_canonicalises_as_lxml_does(name: str, method: C14nMethod) -> None:
    assert ours(CORPUS[name], method) == lxmls(CORPUS[name], method)


def test_a_big_text_streams_through_in_pieces() -> None:
    text = b"QUJD&amp;\r\n" * 300_000  # 3.3 MB, several expat buffers
    data = b'<r xmlns="urn:x"><a>' + text + b"</a></r>"
    for method in METHODS[:3]:
        assert ours(data, method) == lxmls(data.replace(b"<r", b"<r", 1), method)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b'<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>', DoctypeForbidden),
        (b"<r><!-- <!DOCTYPE r> --></r>", DoctypeForbidden),
        (b"<r>&e;</r>", MalformedXml),
        (b"<p:r/>", MalformedXml),
        (b'<r xmlns:p=""/>', MalformedXml),
        (b'<r xmlns:p="u" xmlns:q="u" p:a="1" q:a="2"/>', MalformedXml),
        (b"<a>" * 300 + b"</a>" * 300, MalformedXml),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>', MalformedXml),
        (b"<r></s>", MalformedXml),
        (b"junk<r/>", MalformedXml),
    ],
)
def test_the_parse_refuses_what_xmlsafe_refuses(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        ours(data, C14nMethod())


# --- generated documents --------------------------------------------------------------

URIS = ["urn:a", "urn:b", "http://example.org/ns?x=1&y=2", "urn:\u1ec7"]
PREFIXES = ["", "p", "q", "r"]
TEXTS = st.text(
    alphabet=st.sampled_from(list("ab &<>\"'\r\n\t\u1ec7]")) | st.characters(codec="utf-8"),
    max_size=12,
).filter(lambda t: all(c in "\t\n\r" or (c >= " " and c not in "\ufffe\uffff") for c in t))


def _escape(text: str, quote: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("\r", "&#13;" if quote else "\r")
    return text.replace('"', "&quot;") if quote else text


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    def element(scope: dict[str, str], depth: int) -> str:
        declared: dict[str, str] = {}
        for prefix in draw(st.lists(st.sampled_from(PREFIXES), max_size=3, unique=True)):
            uri = (
                draw(st.sampled_from([*URIS, ""])) if prefix == "" else draw(st.sampled_from(URIS))
            )
            declared[prefix] = uri
        inner = {**scope, **declared}
        usable = [p for p in PREFIXES if p and p in inner]
        prefix = draw(st.sampled_from(["", *usable]))
        name = f"{prefix}:e{depth}" if prefix else f"e{depth}"
        attrs: dict[str, str] = {}
        for _ in range(draw(st.integers(0, 3))):
            a_prefix = draw(st.sampled_from(["", "xml", *usable]))
            local = draw(st.sampled_from(["a", "b", "lang", "space"]))
            key = f"{a_prefix}:{local}" if a_prefix else local
            expanded = (inner.get(a_prefix, "x") if a_prefix != "xml" else "xml", local)
            if (
                any(
                    (inner.get(k.partition(":")[0], "x"), k.partition(":")[2]) == expanded
                    for k in attrs
                    if ":" in k
                )
                or key in attrs
            ):
                continue
            attrs[key] = draw(TEXTS)
        decls = "".join(
            f' xmlns:{p}="{_escape(u, True)}"' if p else f' xmlns="{_escape(u, True)}"'
            for p, u in declared.items()
        )
        atts = "".join(f' {k}="{_escape(v, True)}"' for k, v in attrs.items())
        parts = []
        if depth < 5:
            for _ in range(draw(st.integers(0, 3))):
                kind = draw(st.sampled_from(["el", "text", "comment", "pi", "cdata"]))
                if kind == "el":
                    parts.append(element(inner, depth + 1))
                elif kind == "text":
                    parts.append(_escape(draw(TEXTS)))
                elif kind == "comment":
                    parts.append(f"<!--{draw(TEXTS).replace('-', '')}-->")
                elif kind == "pi":
                    parts.append(f"<?pi{depth} {draw(TEXTS).replace('?', '')}?>")
                else:
                    parts.append(f"<![CDATA[{draw(TEXTS).replace(']', '')}]]>")
        body = "".join(parts)
        return (
            f"<{name}{decls}{atts}>{body}</{name}>"
            if body or draw(st.booleans())
            else f"<{name}{decls}{atts}/>"
        )

    before = draw(st.sampled_from(["", "<!-- a -->\n", "<?p x?>\r\n<!--b-->"]))
    after = draw(st.sampled_from(["", "\n<!-- z -->", "<?q?>\n\n"]))
    return (before + element({}, 0) + after).encode("utf-8")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), st.sampled_from(METHODS))
def test_generated_documents_canonicalise_as_lxml_does(data: bytes, method: C14nMethod) -> None:
    try:
        expected = lxmls(data, method)
    except (etree.XMLSyntaxError, etree.C14NError):  # libxml2 refuses non-URI namespaces
        with pytest.raises(MalformedXml):
            ours(data, method)
        return
    assert ours(data, method) == expected


def test_the_digest_can_be_taken_as_it_goes() -> None:
    data = CORPUS["redeclared-and-undeclared"]
    digest = hashlib.sha256()
    canonicalize(io.BytesIO(data), C14nMethod(exclusive=True), digest.update)
    assert digest.digest() == hashlib.sha256(lxmls(data, C14nMethod(exclusive=True))).digest()
