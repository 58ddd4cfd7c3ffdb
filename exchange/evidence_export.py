"""Reading what a bundle holds out of a node's store (the Store port), page by page.

The segment of each chain is every entry from the first one about the document to the
chain's head as read when the export starts: the first is found by reading the chain from
the time of the earliest event about the document (no entry about it is older), the rest
by seq. A chain that holds nothing about the document is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from exchange.bundle_format import PackageCopy, document_messages, is_about
from exchange.evidence import EventKind, LogEntry
from exchange.evidence_summary import ARRIVALS
from exchange.store import Store

PAGE = 1000


async def _first_about(
    store: Store, chain: str, since: datetime, document_id: str, messages: set[str]
) -> int | None:
    after = 0
    while True:
        page = await store.log_entries(chain=chain, after=after, since=since, limit=PAGE)
        for entry in page:
            if is_about(entry.event, document_id, messages):
                return entry.seq
        if len(page) < PAGE:
            return None
        after = page[-1].seq


async def _run(store: Store, chain: str, after: int, head: int) -> list[LogEntry]:
    run: list[LogEntry] = []
    while after < head:
        page = await store.log_entries(chain=chain, after=after, limit=PAGE)
        if not page:
            break
        run += [entry for entry in page if entry.seq <= head]
        after = page[-1].seq
    return run


async def document_segment(store: Store, document_id: str) -> list[LogEntry]:
    """Per chain holding events about the document, the entries from the first of them to
    the head; empty when the store knows nothing about it."""
    events = list(await store.events_about(document_id=document_id))
    messages = document_messages(events, document_id)
    known = await store.document(document_id)
    if known is not None:
        messages.add(known.message_id)
    for message_id in sorted(messages):
        events += await store.events_about(message_id=message_id)
    if not events:
        return []
    since = min(event.at for event in events)
    segment: list[LogEntry] = []
    for chain, (head, _) in sorted((await store.chain_heads()).items()):
        first = await _first_about(store, chain, since, document_id, messages)
        if first is not None:
            segment += await _run(store, chain, first - 1, head)
    return segment


async def package_copies(
    store: Store, entries: Iterable[LogEntry], document_id: str, node: str
) -> tuple[list[PackageCopy], list[str]]:
    """The bytes of every package of the document that arrived at ``node`` (its ACCEPTED
    and RECEIVED entries), and the message ids whose bytes the store no longer has."""
    entries = list(entries)
    messages = document_messages((e.event for e in entries), document_id)
    copies: dict[str, PackageCopy] = {}
    missing: list[str] = []
    for entry in entries:
        event = entry.event
        if (
            event.kind not in ARRIVALS
            or event.node != node
            or not is_about(event, document_id, messages)
            or event.message_id is None
            or event.digest is None
            or event.message_id in copies
        ):
            continue
        try:
            data = await store.package_bytes(event.digest)
        except (KeyError, OSError):  # the stores' "no such bytes"
            missing.append(event.message_id)
            continue
        copies[event.message_id] = PackageCopy(event.message_id, event.digest, data)
    return list(copies.values()), missing


async def kept_checkpoints(
    store: Store, node: str, since: datetime | None = None
) -> list[dict[str, Any]]:
    """The checkpoints of ``node`` this store's log keeps (CHECKPOINT events whose node is
    ``node``: a child's, reported here), by chain and seq."""
    records: list[dict[str, Any]] = []
    for chain in sorted(await store.chain_heads()):
        after = 0
        while True:
            page = await store.log_entries(chain=chain, after=after, since=since, limit=PAGE)
            for entry in page:
                record = entry.event.detail.get("checkpoint")
                if (
                    entry.event.kind is EventKind.CHECKPOINT
                    and entry.event.node == node
                    and isinstance(record, Mapping)
                ):
                    records.append(dict(record))
            if len(page) < PAGE:
                break
            after = page[-1].seq
    return sorted(records, key=_place)


def _place(record: Mapping[str, Any]) -> tuple[str, int]:
    seq = record.get("seq")
    return str(record.get("chain")), seq if isinstance(seq, int) else -1
