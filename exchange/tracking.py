"""Where each recipient of a document stands: pure folds over the evidence events.

The transport state of one (package, recipient) moves accepted → forwarded → delivered →
fetched, or ends failed with a reason. The business state of one (DocumentId, recipient)
follows the edXML status codes 01 → 02 | 03 → 04 → 05 → 06, with a recall beside it
(13 → 15 | 16). Both are derived from every event known, whatever order they arrived
in: a 05 that overtook its 03 still reads 05, and a late 03 does not move it back. Two
answers stamped the same instant (a 02 and a 03, a 15 and a 16) read the same whichever
came first: the higher code counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from exchange.evidence import Event, EventKind
from exchange.model import STATUS_CODES

# how far along each code is; 02 (refused) and 03 (registered) are the two answers to 01
PROGRESS = {"01": 1, "02": 2, "03": 2, "04": 3, "05": 4, "06": 5}
RECALL_ANSWERS = ("15", "16")
ACKNOWLEDGEMENTS = ("01", "03")


class Deadlines(Protocol):
    def end_of_working_day(self, at: datetime) -> datetime: ...


@dataclass(frozen=True)
class RecipientState:
    recipient: str
    transport: str  # accepted | forwarded | bridged | delivered | fetched | failed
    at: datetime  # when it reached that state
    node: str | None = None  # where (delivered, fetched, failed)
    reason: str | None = None  # why it failed
    receipt: bool = False  # a signed delivery receipt is held
    status: str | None = None  # the furthest business status code
    status_at: datetime | None = None
    recall: str | None = None  # 13 asked; 15 agreed; 16 refused
    overdue: bool = False  # delivered, and not acknowledged (01 or 03) by its deadline
    due: datetime | None = None  # the end of the working day it was delivered
    note: str | None = None  # what a revoke or an update's removal found at this recipient

    @property
    def status_meaning(self) -> str | None:
        return STATUS_CODES.get(self.status) if self.status else None


def _status_time(event: Event) -> datetime:
    sent = event.detail.get("sent_at")
    return datetime.fromisoformat(sent) if isinstance(sent, str) and sent else event.at


def business_state(
    recipient: str, events: Iterable[Event]
) -> tuple[str | None, datetime | None, str | None]:
    """(furthest code, when, recall state) for one recipient, from the status events."""
    best: tuple[int, datetime, str] | None = None
    recall: tuple[datetime, str] | None = None
    for event in events:
        if event.kind is not EventKind.STATUS:
            continue
        code = str(event.detail.get("code", ""))
        when = _status_time(event)
        if code == "13":  # asked by the document's sender, of every recipient
            if recall is None:
                recall = (when, code)
        elif event.party != recipient:
            continue
        elif code in RECALL_ANSWERS:  # the later answer; at the same instant, the higher code
            if recall is None or recall[1] == "13" or (when, code) > recall:
                recall = (when, code)
        elif code in PROGRESS:  # the furthest, then the later; then the higher code, so
            candidate = (PROGRESS[code], when, code)  # that arrival order never decides
            if best is None or candidate > best:
                best = candidate
    return (
        best[2] if best else None,
        best[1] if best else None,
        recall[1] if recall else None,
    )


def acknowledged_at(recipient: str, events: Iterable[Event]) -> datetime | None:
    times = [
        _status_time(e)
        for e in events
        if e.kind is EventKind.STATUS
        and e.party == recipient
        and e.detail.get("code") in ACKNOWLEDGEMENTS
    ]
    return min(times) if times else None


def recipient_state(
    recipient: str,
    accepted_at: datetime,
    forwarded_at: datetime | None,
    transport_events: Sequence[Event],
    status_events: Sequence[Event],
    *,
    now: datetime,
    deadlines: Deadlines | None = None,
) -> RecipientState:
    """One recipient's row: the transport state from the receipt events of the package,
    the business state from the status events of its document."""
    delivered: Event | None = None
    fetched: Event | None = None
    failed: Event | None = None
    bridged: Event | None = None
    note: str | None = None
    receipt = False  # any delivery to the recipient that brought a signed receipt
    for event in transport_events:
        if event.kind is EventKind.DELIVERED and recipient in event.detail.get("recipients", ()):
            delivered = delivered or event
            receipt = receipt or bool(event.detail.get("receipt"))
        elif event.kind is EventKind.BRIDGED and recipient in event.detail.get("recipients", ()):
            bridged = bridged or event
        elif event.party != recipient:
            continue
        elif event.kind is EventKind.FETCHED:
            fetched = fetched or event
        elif event.kind in (EventKind.FAILED, EventKind.REVOKED) and event.detail.get("reason"):
            failed = failed or event
        elif event.kind is EventKind.REVOKED:
            note = str(event.detail.get("outcome") or "") or None
    code, code_at, recall = business_state(recipient, status_events)
    if fetched is not None:
        state = RecipientState(recipient, "fetched", fetched.at, fetched.node)
    elif failed is not None:
        state = RecipientState(
            recipient, "failed", failed.at, failed.node, str(failed.detail["reason"])
        )
    elif delivered is not None:
        state = RecipientState(recipient, "delivered", delivered.at, delivered.node)
    elif bridged is not None:  # handed to another axis: as far as this one can follow it
        upstream, doc_id = bridged.detail.get("upstream"), bridged.detail.get("doc_id")
        state = RecipientState(recipient, "bridged", bridged.at, bridged.node)
        note = note or f"handed to the {upstream} axis as docId {doc_id}"
    elif forwarded_at is not None:
        state = RecipientState(recipient, "forwarded", forwarded_at)
    else:
        state = RecipientState(recipient, "accepted", accepted_at)
    due = overdue = None
    if delivered is not None and deadlines is not None:
        due = deadlines.end_of_working_day(delivered.at)
        acked = acknowledged_at(recipient, status_events)
        overdue = (acked is None and now > due) or (acked is not None and acked > due)
    return RecipientState(
        state.recipient,
        state.transport,
        state.at,
        state.node,
        state.reason,
        receipt,
        code,
        code_at,
        recall,
        bool(overdue),
        due,
        note,
    )
