"""The answer to "where does my document stand?": one row per recipient, built from this
node's records (the origin node holds the end-to-end view; any node, its local one).

Found by message id or by DocumentId (the first document with that id this node
carried). Each row folds the evidence events (exchange/tracking.py): the transport
state of the package and the business state of the document at that recipient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from exchange.envelope import envelope_hops, envelope_recipients
from exchange.evidence import Event, EventKind
from exchange.links import split_target
from exchange.store import Destination, Store, Trail
from exchange.topology import Topology
from exchange.tracking import Deadlines, RecipientState, recipient_state

MAX_RECEIPTS = 200  # receipts carried in one answer (each is a few KB)


@dataclass(frozen=True)
class Receipt:
    node: str
    recipients: tuple[str, ...]
    at: datetime
    document: str  # base64 of the signed receipt XML


@dataclass(frozen=True)
class DocumentStatus:
    message_id: str
    document_id: str | None
    sender: str
    kind: str
    level: str
    received_at: datetime
    here: str
    origin: bool  # this node is where it entered the axis: the view is end to end
    hops: tuple[tuple[str, str], ...]  # (node, when) of the hop records as stored here
    recipients: tuple[RecipientState, ...]
    receipts: tuple[Receipt, ...]
    statuses: tuple[tuple[str, str, str], ...]  # (when, from, code) in arrival order
    replaced_by: tuple[str, ...] = ()  # DocumentIds of documents that replace this one
    receipts_left_out: int = 0  # past MAX_RECEIPTS: fetch them from the evidence bundle

    def to_json(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [plain(v) for v in value]
            return value

        record: dict[str, Any] = plain(asdict(self))
        for row, state in zip(record["recipients"], self.recipients, strict=True):
            row["status_meaning"] = state.status_meaning
        return record


async def find_message(store: Store, ident: str) -> Trail | None:
    trail = await store.trail(ident)
    if trail is None:
        known = await store.document(ident)
        trail = await store.trail(known.message_id) if known else None
    return trail


async def document_status(
    store: Store,
    ident: str,
    *,
    here: str,
    topology: Topology | None,
    now: datetime,
    deadlines: Deadlines | None = None,
) -> DocumentStatus | None:
    trail = await find_message(store, ident)
    if trail is None:
        return None
    wire = await store.envelope(trail.message_id)
    transport = list(await store.events_about(message_id=trail.message_id))
    about_document: Sequence[Event] = (
        await store.events_about(document_id=trail.document_id) if trail.document_id else ()
    )
    # one pass over the events, filed by the recipient they concern; a status is filed
    # only if its author may send it (a recall, 13, only from the document's sender)
    statuses = [e for e in about_document if e.kind is EventKind.STATUS]
    recalls = [e for e in statuses if e.detail.get("code") == "13" and e.party == trail.sender]
    status_of: dict[str, list[Event]] = {}
    for event in statuses:
        if event.party and event.detail.get("code") != "13":
            status_of.setdefault(event.party, []).append(event)
    concerning: dict[str, list[Event]] = {}
    for event in transport:
        if event.kind in (EventKind.DELIVERED, EventKind.BRIDGED):
            for organ in event.detail.get("recipients", ()):
                concerning.setdefault(str(organ), []).append(event)
        elif event.party:
            concerning.setdefault(event.party, []).append(event)
    forwarded: dict[str, datetime] = {}
    for step in trail.steps:
        if step.destination is Destination.LINK and step.state == "forwarded":
            forwarded.setdefault(split_target(step.target)[0], step.at)
    rows = []
    for organ in envelope_recipients(wire):
        current = topology.current_code(organ) if topology else organ  # an oldCode renamed
        hop = topology.next_hop(here, current) if topology else None
        events = [*concerning.get(organ, ()), *concerning.get(current, ())]
        if topology is not None:  # only nodes on the way to the recipient speak for it
            home = topology.homes.get(current)
            on_path = topology.path(here, home) if home else frozenset(topology.ancestry(here))
            events = [e for e in events if e.node in on_path]
        state = recipient_state(
            current,
            trail.received_at,
            forwarded.get(hop) if hop else None,
            events,
            [*status_of.get(current, ()), *recalls],
            now=now,
            deadlines=deadlines,
        )
        rows.append(replace(state, recipient=organ) if current != organ else state)
    receipts = tuple(
        Receipt(e.node, tuple(e.detail.get("recipients", ())), e.at, str(e.detail["receipt"]))
        for e in transport
        if e.kind is EventKind.DELIVERED and e.detail.get("receipt")
    )
    return DocumentStatus(
        message_id=trail.message_id,
        document_id=trail.document_id,
        sender=trail.sender,
        kind=trail.kind,
        level=trail.level,
        received_at=trail.received_at,
        here=here,
        origin=not trail.source.startswith("link:"),
        hops=envelope_hops(wire),
        recipients=tuple(rows),
        receipts=receipts[:MAX_RECEIPTS],
        receipts_left_out=max(0, len(receipts) - MAX_RECEIPTS),
        statuses=tuple(
            (e.at.isoformat(), e.party or "?", str(e.detail.get("code"))) for e in statuses
        ),
        replaced_by=tuple(
            str(e.detail.get("by"))
            for e in about_document
            if e.kind is EventKind.REPLACED and e.document_id == trail.document_id
        ),
    )
