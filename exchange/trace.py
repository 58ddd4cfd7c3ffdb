"""The national axis's trace convention at a bridge (reference edxml.md §2.3): each hop
appends its own ``TraceHeader`` (OrganId, Timestamp ``yyyy/MM/dd HH:mm:ss``) after the
ones already there, and never rewrites them.

Inside lienthong the hop trace lives in the signed hop records, and a package's bytes are
never changed (DESIGN §3). Only a bridge configured with ``trace_organ`` appends a
TraceHeader, to the copy it hands to the upstream, as a splice of bytes: everything else
stays byte for byte. An enveloped XML signature over the whole document no longer covers
the copy, as it does not on the national axis itself, where hubs append theirs.
"""

from __future__ import annotations

import re
from datetime import datetime
from xml.sax.saxutils import escape

from exchange.errors import MalformedXml

# the list's closing tag, and the last TraceHeader's, with whatever prefix the producer used
_LIST_OPEN = re.compile(rb"<(?P<prefix>[A-Za-z_][\w.-]*:)?TraceHeaderList\b[^>]*?(?P<empty>/?)>")
_HEADER_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?TraceHeader\s*>")
_LIST_CLOSE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?TraceHeaderList\s*>")


def trace_time(at: datetime) -> str:
    return at.strftime("%Y/%m/%d %H:%M:%S")


def append_trace_header(data: bytes, organ: str, at: datetime) -> bytes:
    """``data`` with one more TraceHeader, after the last one (or first in the list)."""
    opened = _LIST_OPEN.search(data)
    if opened is None:
        raise MalformedXml("no TraceHeaderList to append this hop's TraceHeader to")
    prefix = (opened["prefix"] or b"").decode("ascii")
    header = (
        f"<{prefix}TraceHeader><{prefix}OrganId>{escape(organ)}</{prefix}OrganId>"
        f"<{prefix}Timestamp>{trace_time(at)}</{prefix}Timestamp></{prefix}TraceHeader>"
    ).encode()
    if opened["empty"]:  # <TraceHeaderList/>: open it up
        tag = opened.group(0)[:-2].rstrip() + b">"
        closing = f"</{prefix}TraceHeaderList>".encode()
        return data[: opened.start()] + tag + header + closing + data[opened.end() :]
    closed = _LIST_CLOSE.search(data, opened.end())
    if closed is None:
        raise MalformedXml("the TraceHeaderList is not closed")
    ends = [m.end() for m in _HEADER_CLOSE.finditer(data, opened.end(), closed.start())]
    at_offset = ends[-1] if ends else opened.end()
    return data[:at_offset] + header + data[at_offset:]
