"""A node's evidence about one document, as tests build it: the events a node records
(accepted, delivered here and at another node, fetched, a status, a failure, and other
traffic in between), two checkpoints, and the operator who rewrites the chain."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from exchange.checkpoint import checkpoint_event, make_checkpoint
from exchange.devpki import Issued, issue
from exchange.envelope import NodeKey
from exchange.evidence import Event, EventKind, LogEntry, chain_next, entry_hash
from exchange.model import Level
from exchange.receipt import DeliveryReceipt, ReceiptRecipient, issue_receipt

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
NODE, PARENT = "province-h53", "central"
SENDER = "000.21.31.H53"
LOCAL, REMOTE, LOST = "000.21.32.H53", "000.00.00.G22", "000.00.00.H41"
DOC = "000.21.31.H53,2026/11/20,12/UBND-VP"
DATA = "<edXML>Công văn số 12</edXML>".encode()
STATUS_DATA = b"<edXML>Status 03</edXML>"
# message ids are UUIDs, as the node gives them (and receipts require)
M0, M1 = "5b0c8a52-7a57-4b0e-9d52-0b4f3f5f1a00", "5b0c8a52-7a57-4b0e-9d52-0b4f3f5f1a01"
S1, M9 = "5b0c8a52-7a57-4b0e-9d52-0b4f3f5f1a51", "5b0c8a52-7a57-4b0e-9d52-0b4f3f5f1a99"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class NodeIdentity:
    key: NodeKey
    issued: Issued


def node_identity(ca: Issued, node_id: str) -> NodeIdentity:
    """A node's key and certificate, valid from 2025: the receipts below are dated T0."""
    since = datetime(2025, 1, 1, tzinfo=UTC)
    issued = issue(ca, node_id, role="node", key_type="ec", not_before=since, days=3650)
    return NodeIdentity(NodeKey(node_id, issued.key), issued)  # type: ignore[arg-type]


def receipt(signer: NodeIdentity | None, organ: str, minutes: int) -> dict[str, str]:
    """The detail a delivered event carries: its recipients, and the signed receipt."""
    if signer is None:
        return {}
    delivered = DeliveryReceipt(
        message_id=M1,
        document_id=DOC,
        sender=SENDER,
        node=signer.key.node_id,
        level=Level.STRICT,
        package_sha256=sha(DATA),
        issued_at=at(minutes),
        recipients=(ReceiptRecipient(organ, at(minutes)),),
    )
    data = issue_receipt(delivered, signer.issued.key, signer.issued.cert)
    return {"receipt": base64.b64encode(data).decode()}


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def document_events(signers: Mapping[str, NodeIdentity] | None = None) -> list[Event]:
    """The document's life at NODE, and other traffic, in the order the node records it;
    the deliveries with receipts when their nodes' ``signers`` are given."""
    signers = signers or {}
    digest, status_digest = sha(DATA), sha(STATUS_DATA)
    common: dict[str, Any] = {"message_id": M1, "document_id": DOC, "sender": SENDER}
    return [
        Event(EventKind.ACCEPTED, f"accepted|{M0}", at(0), NODE, message_id=M0, document_id="D-0"),
        Event(
            EventKind.ACCEPTED,
            f"accepted|{M1}",
            at(1),
            NODE,
            digest=digest,
            detail={"level": "strict", "recipients": [LOCAL, REMOTE, LOST], "source": "amqp"},
            **common,
        ),
        Event(
            EventKind.DELIVERED,
            f"delivered|{M1}|{NODE}|a",
            at(2),
            NODE,
            digest=digest,
            detail={"recipients": [LOCAL], **receipt(signers.get(NODE), LOCAL, 2)},
            **common,
        ),
        Event(
            EventKind.DELIVERED,
            f"delivered|{M1}|{PARENT}|b",
            at(3),
            PARENT,
            digest=digest,
            detail={"recipients": [REMOTE], **receipt(signers.get(PARENT), REMOTE, 3)},
            **common,
        ),
        Event(
            EventKind.FETCHED,
            f"fetched|{M1}|{LOCAL}",
            at(5),
            NODE,
            party=LOCAL,
            digest=digest,
            **common,
        ),
        Event(EventKind.STATUS, "status|s-0|x", at(6), NODE, document_id="D-0", party=LOCAL),
        Event(
            EventKind.ACCEPTED,
            f"accepted|{S1}",
            at(7),
            NODE,
            message_id=S1,
            document_id=DOC,
            sender=LOCAL,
            digest=status_digest,
            detail={"level": "strict", "recipients": [SENDER], "source": "amqp"},
        ),
        Event(
            EventKind.STATUS,
            f"status|{S1}|{NODE}",
            at(7),
            NODE,
            message_id=S1,
            document_id=DOC,
            sender=LOCAL,
            party=LOCAL,
            digest=status_digest,
            detail={"code": "03", "sent_at": at(6).isoformat(), "description": "Đã tiếp nhận"},
        ),
        Event(
            EventKind.FAILED,
            f"failed|{M1}|H41",
            at(9),
            NODE,
            party=LOST,
            detail={"reason": "expired"},
            **common,
        ),
    ]


def chain_of(events: list[Event]) -> list[LogEntry]:
    entries: list[LogEntry] = []
    for event in events:
        head = (entries[-1].seq, entries[-1].hash) if entries else None
        entries.append(chain_next("main", head, event))
    return entries


def build_log(
    key: NodeKey, signers: Mapping[str, NodeIdentity] | None = None
) -> tuple[list[LogEntry], list[dict[str, Any]]]:
    """The node's chain, with a checkpoint after the first delivery and one at the end;
    and the checkpoint records (what the parent keeps)."""
    entries: list[LogEntry] = []
    checkpoints: list[dict[str, Any]] = []

    def append(event: Event) -> None:
        head = (entries[-1].seq, entries[-1].hash) if entries else None
        entries.append(chain_next("main", head, event))

    def checkpoint(minutes: int) -> None:
        record = make_checkpoint(key, "main", (entries[-1].seq, entries[-1].hash), at(minutes))
        checkpoints.append(record)
        append(checkpoint_event(record, at(minutes), PARENT))

    events = document_events(signers)
    for event in events[:3]:
        append(event)
    checkpoint(2)
    for event in events[3:]:
        append(event)
    checkpoint(10)
    return entries, checkpoints


def rewrite(
    records: list[dict[str, Any]], seq: int, edit: Callable[[dict[str, Any]], None], key: NodeKey
) -> list[tuple[int, dict[str, Any], str, str]]:
    """What a dishonest operator holding the node key does to a chain: edit the event at
    ``seq``, then recompute every later hash and sign the node's own checkpoints again, so
    that the chain holds together. ``records``: (seq-ordered) event records from ``seq`` on,
    with their prev; returns (seq, event record, prev, hash) to write back."""
    out: list[tuple[int, dict[str, Any], str, str]] = []
    hashes: dict[int, str] = {}
    prev = records[0]["prev"]
    for item in records:
        number, record = item["seq"], item["event"]
        if number == seq:
            edit(record)
        signed = record.get("detail", {}).get("checkpoint")
        if record["kind"] == "checkpoint" and signed and signed["seq"] in hashes:
            when = datetime.fromisoformat(signed["at"])
            record["detail"]["checkpoint"] = make_checkpoint(
                key, signed["chain"], (signed["seq"], hashes[signed["seq"]]), when
            )
        digest = entry_hash(item["chain"], number, prev, Event.from_record(record))
        out.append((number, record, prev, digest))
        hashes[number] = digest
        prev = digest
    return out
