"""What a node records of its work, and how records travel back to the origin node.

Each builder returns the evidence event for one fact (exchange/evidence.py), keyed so
that doing the work again records nothing new. Facts the origin node must learn of
(a delivery, a fetch, a failure judged downstream) name it in ``report_to``; the relay
sends them hop by hop towards it, batched per link: one signed report message carries
many events, so the traffic grows with links, not with recipients.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from exchange.envelope import Envelope, NodeKey, PeerKey, verify_record
from exchange.errors import EnvelopeInvalid
from exchange.evidence import Event, EventKind
from exchange.model import Package
from exchange.pades import to_record

REPORTS = "reports"  # the link message kind (KIND_HEADER) of a report batch
REPORT_BATCH = 500  # events per report message
# edXML Timestamps carry no offset; they are Vietnamese local time (UTC+7, no summer time)
VIETNAM = timezone(timedelta(hours=7))


def _report_to(origin: str | None, here: str) -> str | None:
    return origin if origin and origin != here else None


def accepted(
    package: Package,
    message_id: str,
    here: str,
    at: datetime,
    source: str,
    recipients: Sequence[str],
    *,
    held: str | None = None,
) -> Event:
    detail: dict[str, object] = {
        "level": package.level.value,
        "kind": package.kind.value,
        "source": source,
        "recipients": list(recipients),
        "business": int(package.business.type) if package.business else None,
    }
    if held is not None:
        detail["held"] = held
    if package.pdf_signatures:
        detail["pdf_signatures"] = [to_record(sig) for sig in package.pdf_signatures]
    return Event(
        EventKind.ACCEPTED,
        f"accepted|{message_id}",
        at,
        here,
        message_id=message_id,
        document_id=package.document_id,
        sender=package.sender.organ_id,
        digest=package.digest,
        detail=detail,
    )


def replaced(package: Package, message_id: str, here: str, at: datetime) -> list[Event]:
    """A replacing document links the documents it replaces: one event about each of
    them, so that asking after the old one finds the new."""
    business = package.business
    if business is None or not business.replaces:
        return []
    return [
        Event(
            EventKind.REPLACED,
            f"replaced|{message_id}|{old.document_id}",
            at,
            here,
            message_id=message_id,
            document_id=old.document_id,
            sender=package.sender.organ_id,
            digest=package.digest,
            detail={"by": package.document_id, "organs": list(old.organ_ids)},
        )
        for old in business.replaces
    ]


def received(envelope: Envelope, here: str, at: datetime, came_from: str) -> Event:
    return Event(
        EventKind.RECEIVED,
        f"received|{envelope.message_id}|{here}",
        at,
        here,
        message_id=envelope.message_id,
        document_id=envelope.document_id,
        sender=envelope.sender,
        digest=envelope.sha256,
        detail={
            "level": envelope.level,
            "kind": envelope.kind,
            "from": came_from,
            "origin": envelope.origin,
        },
    )


def status_time(sent_at: datetime | None) -> str | None:
    """A status's edXML Timestamp as ISO 8601 with its offset (Vietnam time when it has none)."""
    if sent_at is None:
        return None
    return (sent_at if sent_at.tzinfo else sent_at.replace(tzinfo=VIETNAM)).isoformat()


def status(
    *,
    message_id: str,
    document_id: str | None,
    author: str,
    digest: str,
    code: str,
    sent_at: datetime | None,
    description: str | None,
    here: str,
    at: datetime,
) -> Event:
    """A business status about a document, as it passed this node (kept here: statuses
    themselves travel to the document's sender, whose node records them too)."""
    return Event(
        EventKind.STATUS,
        f"status|{message_id}|{here}",
        at,
        here,
        message_id=message_id,
        document_id=document_id,
        sender=author,
        party=author,
        digest=digest,
        detail={
            "code": code,
            "sent_at": status_time(sent_at),
            "description": (description or "")[:500] or None,
        },
    )


def delivered(
    *,
    message_id: str,
    document_id: str | None,
    sender: str | None,
    digest: str,
    recipients: Sequence[str],
    here: str,
    at: datetime,
    origin: str | None,
    receipt: bytes | None = None,
) -> Event:
    """One delivery at this node, for every recipient it put the package in the mailbox
    of in one relay batch: one signed receipt covers them all."""
    names = sorted(recipients)
    batch = hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]
    detail: dict[str, Any] = {"recipients": names}
    if receipt is not None:
        detail["receipt"] = base64.b64encode(receipt).decode("ascii")
    return Event(
        EventKind.DELIVERED,
        f"delivered|{message_id}|{here}|{batch}",
        at,
        here,
        message_id=message_id,
        document_id=document_id,
        sender=sender,
        digest=digest,
        detail=detail,
        report_to=_report_to(origin, here),
    )


def fetched(
    *,
    message_id: str,
    document_id: str | None,
    sender: str,
    digest: str,
    organ: str,
    here: str,
    at: datetime,
    origin: str | None,
) -> Event:
    return Event(
        EventKind.FETCHED,
        f"fetched|{message_id}|{organ}|{here}",
        at,
        here,
        message_id=message_id,
        document_id=document_id,
        sender=sender,
        party=organ,
        digest=digest,
        report_to=_report_to(origin, here),
    )


def failed(
    *,
    message_id: str,
    document_id: str | None,
    sender: str | None,
    organ: str,
    reason: str,
    here: str,
    at: datetime,
    origin: str | None,
    kind: EventKind = EventKind.FAILED,
) -> Event:
    return Event(
        kind,
        f"{kind.value}|{message_id}|{organ}|{here}",
        at,
        here,
        message_id=message_id,
        document_id=document_id,
        sender=sender,
        party=organ,
        detail={"reason": reason},
        report_to=_report_to(origin, here),
    )


# --- report batches on links ------------------------------------------------------------


def seal_reports(key: NodeKey, events: Sequence[Event]) -> bytes:
    """One link message: the events, each with the node it is for, signed by this node."""
    record = key.sign(
        {
            "v": 1,
            "from": key.node_id,
            "reports": [{"to": e.report_to, "event": e.record()} for e in events],
        }
    )
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def open_reports(
    body: bytes, keys: Mapping[str, PeerKey], neighbours: Sequence[str]
) -> tuple[str, list[Event]]:
    """The sending node and its events; refused unless a neighbour signed them."""
    try:
        record = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise EnvelopeInvalid(f"the report batch is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(record, dict):
        raise EnvelopeInvalid("the report batch is not a record")
    signer = verify_record(record, keys, "the report batch")
    if signer != record.get("from") or signer not in neighbours:
        raise EnvelopeInvalid(f"a report batch from {signer}, which is not a neighbour node")
    items = record.get("reports")
    if not isinstance(items, list):
        raise EnvelopeInvalid("the report batch has no 'reports' list")
    events = []
    for item in items:
        try:
            to = item["to"]
            events.append(Event.from_record(item["event"], report_to=str(to) if to else None))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EnvelopeInvalid(f"a report in the batch does not parse: {exc}") from exc
    return signer, events
