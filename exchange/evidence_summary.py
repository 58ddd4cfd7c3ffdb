"""What the evidence about one document shows, in lines a person reads: each message of
the document as it entered or passed the node, then per agency what happened to it
(delivered, by which node; fetched; failed or revoked, and why; statuses with their codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from exchange.evidence import Event, EventKind
from exchange.model import STATUS_CODES

ARRIVALS = (EventKind.ACCEPTED, EventKind.RECEIVED)


def when(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def _arrival_line(event: Event) -> str:
    detail = event.detail
    how = "accepted" if event.kind is EventKind.ACCEPTED else "received"
    level = f", level {detail['level']}" if detail.get("level") else ""
    return (
        f"message {event.message_id}: {how} at node {event.node} {when(event.at)}, "
        f"from {event.sender}{level}"
    )


def _names(value: object) -> list[str]:
    """The agencies a detail lists (nothing, if what it holds is not a list)."""
    return [str(v) for v in value] if isinstance(value, list) else []


def _text(value: object) -> str:
    return str(value) if value is not None else "?"


def recipient_lines(events: Sequence[Event]) -> list[str]:
    """Per agency, in time order, what the events show; agencies the document was sent to
    first (in the order the ACCEPTED event names them), then any other party."""
    status_messages = {e.message_id for e in events if e.kind is EventKind.STATUS}
    facts: dict[str, list[tuple[datetime, str]]] = {}
    for event in events:
        if event.kind is EventKind.ACCEPTED and event.message_id not in status_messages:
            for organ in _names(event.detail.get("recipients")):
                facts.setdefault(organ, [])
    for event in sorted(events, key=lambda e: e.at):
        if event.message_id in status_messages and event.kind is not EventKind.STATUS:
            continue  # the status package's own journey: the status line says it
        detail, at = event.detail, when(event.at)
        if event.kind is EventKind.DELIVERED:
            receipt = ", with a signed receipt" if detail.get("receipt") else ""
            for organ in _names(detail.get("recipients")):
                facts.setdefault(organ, []).append(
                    (event.at, f"delivered {at} at node {event.node}{receipt}")
                )
        elif event.party is None:
            continue
        elif event.kind is EventKind.FETCHED:
            facts.setdefault(event.party, []).append((event.at, f"fetched {at}"))
        elif event.kind in (EventKind.FAILED, EventKind.REVOKED):
            reason = detail.get("reason") or detail.get("outcome")
            why = f": {reason}" if reason else ""
            facts.setdefault(event.party, []).append((event.at, f"{event.kind} {at}{why}"))
        elif event.kind is EventKind.STATUS:
            code = _text(detail.get("code"))
            meaning = detail.get("description") or STATUS_CODES.get(code)
            about = f" ({meaning})" if meaning else ""
            facts.setdefault(event.party, []).append((event.at, f"status {code}{about} {at}"))
    return [
        f"  {organ}: " + ("; ".join(text for _, text in done) or "no evidence of delivery")
        for organ, done in facts.items()
    ]


def document_lines(events: Sequence[Event], document_id: str) -> list[str]:
    """The summary of ``events`` (all about ``document_id``), arrivals then recipients."""
    status_messages = {e.message_id for e in events if e.kind is EventKind.STATUS}
    seen: set[tuple[str | None, str]] = set()
    lines = [f"document {document_id}"]
    for event in events:
        place = (event.message_id, event.node)
        if event.kind in ARRIVALS and event.message_id not in status_messages and place not in seen:
            seen.add(place)
            lines.append(_arrival_line(event))
    return lines + recipient_lines(events)
