"""Names and small tree helpers for edXML (QCVN 102:2016).

Every reader in the core goes through these helpers so that element order never matters
and the namespace is spelled in one place.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
XLINK_NS = "http://www.w3.org/1999/xlink"


@cache
def q(name: str) -> str:
    """The Clark name of an edXML element."""
    return f"{{{NS}}}{name}"


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def line_of(el: etree._Element) -> int | None:
    line = el.sourceline
    return line if isinstance(line, int) else None


def is_element(node: object) -> bool:
    return isinstance(node, etree._Element) and isinstance(node.tag, str)


def kids(el: etree._Element | None, name: str) -> list[etree._Element]:
    """Direct edXML children called ``name``, in document order ([] when ``el`` is None)."""
    if el is None:
        return []
    return list(el.iterchildren(q(name)))


def kid(el: etree._Element | None, name: str) -> etree._Element | None:
    if el is None:
        return None
    return next(el.iterchildren(q(name)), None)


def text(el: etree._Element | None, name: str | None = None) -> str | None:
    """Stripped text of ``el`` (or of its child ``name``); None when absent or empty."""
    target = kid(el, name) if name is not None else el
    if target is None or target.text is None:
        return None
    value = target.text.strip()
    return value or None


def walk(el: etree._Element, *names: str) -> etree._Element | None:
    node: etree._Element | None = el
    for name in names:
        node = kid(node, name)
        if node is None:
            return None
    return node


def path_of(el: etree._Element) -> str:
    """A readable path: local names, with a 1-based index where siblings share a name."""
    steps: list[str] = []
    node: etree._Element | None = el
    while node is not None:
        name = local(node)
        parent = node.getparent()
        if parent is not None:
            same = list(parent.iterchildren(node.tag))
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def elements(el: etree._Element) -> Iterator[etree._Element]:
    return (c for c in el.iterchildren() if is_element(c))


def header(root: etree._Element) -> etree._Element | None:
    return walk(root, "edXMLEnvelope", "edXMLHeader")


def message_block(root: etree._Element) -> etree._Element | None:
    """The header's MessageHeader, or the Status block some producers send instead."""
    head = header(root)
    block = kid(head, "MessageHeader")
    return block if block is not None else kid(head, "Status")


def sender_id(root: etree._Element) -> str | None:
    """From/OrganId, as the document states it (trusted only on a verified tree)."""
    return text(kid(message_block(root), "From"), "OrganId")
