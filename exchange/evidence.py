"""The evidence log: every package digest, receipt, status and fetch a node handled, as
events in an append-only chain where each entry names the hash of the one before it.

An event is a fact with a unique ``key``: the same fact recorded twice (a redelivered
report, a relay round done again after a crash) is one entry. Each store appends events
in the transaction that does what they record, so the log and the state cannot differ.
The chain is per store instance (``chain``); a node's service instances sharing one
PostgreSQL keep one chain each. docs/evidence.md is the specification.

Entry hash: SHA-256 over ``prev`` (hex) and the canonical JSON of the entry's record
(exchange/envelope.canonical), so a record edited, removed or reordered breaks every
hash after it.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from exchange.envelope import canonical

GENESIS = "0" * 64


class EventKind(enum.StrEnum):
    ACCEPTED = "accepted"  # a package entered the axis here (the origin node)
    RECEIVED = "received"  # a package came in over a link
    DELIVERED = "delivered"  # into mailboxes at a node: carries the signed receipt
    FETCHED = "fetched"  # an agency acknowledged a package in its mailbox
    FAILED = "failed"  # a copy for one recipient was given up, with the reason
    STATUS = "status"  # a business status (edXML StatusCode) about a document
    REVOKED = "revoked"  # a revoke (or an update's removal) met a recipient's mailbox
    REPLACED = "replaced"  # a document replaces earlier ones
    CHECKPOINT = "checkpoint"  # a signed chain head (this node's, or a child's kept here)
    QUARANTINE = "quarantine"  # an operator released or rejected a held package
    BRIDGED = "bridged"  # a package crossed to or from an upstream axis, with its docId there
    OPERATOR = "operator"  # an operator's action: replay, purge, release, refuse, drain


@dataclass(frozen=True)
class Event:
    kind: EventKind
    key: str  # what makes this fact one: recorded once however often it is reported
    at: datetime
    node: str  # the node that did or saw it
    message_id: str | None = None
    document_id: str | None = None
    sender: str | None = None  # From/OrganId of the package concerned
    party: str | None = None  # the recipient concerned (for a status, who sent it)
    digest: str | None = None  # SHA-256 of the package bytes concerned
    detail: Mapping[str, Any] = field(default_factory=dict)
    report_to: str | None = None  # the node that must learn of it (the origin); None: kept

    def record(self) -> dict[str, Any]:
        """The event as plain JSON values (the wire form of a report, and what is hashed)."""
        return {
            "kind": self.kind.value,
            "key": self.key,
            "at": self.at.isoformat(),
            "node": self.node,
            "message_id": self.message_id,
            "document_id": self.document_id,
            "sender": self.sender,
            "party": self.party,
            "digest": self.digest,
            "detail": dict(self.detail),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], report_to: str | None = None) -> Event:
        def text(name: str) -> str | None:
            value = record.get(name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"event {name} must be text")
            return value

        if not isinstance(record, Mapping):
            raise TypeError("an event must be a record")
        at = datetime.fromisoformat(str(record["at"]))
        if at.tzinfo is None:
            raise ValueError("an event's time must say its offset")
        detail = record.get("detail") or {}
        if not isinstance(detail, dict):
            raise TypeError("event detail must be a record")
        return cls(
            kind=EventKind(str(record["kind"])),
            key=str(record["key"]),
            at=at,
            node=str(record["node"]),
            message_id=text("message_id"),
            document_id=text("document_id"),
            sender=text("sender"),
            party=text("party"),
            digest=text("digest"),
            detail=detail,
            report_to=report_to,
        )


@dataclass(frozen=True)
class LogEntry:
    """One entry of a chain: its place, the event, and the hashes that link it."""

    chain: str
    seq: int  # 1, 2, … within the chain
    event: Event
    prev: str  # the hash of entry seq - 1 (GENESIS for the first)
    hash: str

    def record(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "seq": self.seq,
            "prev": self.prev,
            "hash": self.hash,
            "event": self.event.record(),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LogEntry:
        """The entry ``record()`` wrote; KeyError, TypeError or ValueError if it is not one."""
        seq = record["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool):
            raise TypeError("entry seq must be a whole number")
        event = record["event"]
        if not isinstance(event, Mapping):
            raise TypeError("entry event must be a record")
        return cls(
            str(record["chain"]),
            seq,
            Event.from_record(event),
            str(record["prev"]),
            str(record["hash"]),
        )


def entry_hash(chain: str, seq: int, prev: str, event: Event) -> str:
    body = canonical({"chain": chain, "seq": seq, "event": event.record()})
    return hashlib.sha256(prev.encode("ascii") + body).hexdigest()


def chain_next(chain: str, head: tuple[int, str] | None, event: Event) -> LogEntry:
    """The entry that appends ``event`` after ``head`` (seq, hash; None for an empty chain)."""
    seq, prev = head if head is not None else (0, GENESIS)
    return LogEntry(chain, seq + 1, event, prev, entry_hash(chain, seq + 1, prev, event))


def broken_links(entries: list[LogEntry]) -> list[str]:
    """What is wrong with a run of consecutive entries of one chain: an edited record, a
    hash that does not follow, a gap. Empty when the run holds together."""
    problems: list[str] = []
    for index, entry in enumerate(entries):
        if entry_hash(entry.chain, entry.seq, entry.prev, entry.event) != entry.hash:
            problems.append(f"entry {entry.chain}#{entry.seq}: its record does not match its hash")
        if index:
            before = entries[index - 1]
            if entry.seq != before.seq + 1 or entry.chain != before.chain:
                problems.append(f"entry {entry.chain}#{entry.seq}: does not follow #{before.seq}")
            elif entry.prev != before.hash:
                problems.append(
                    f"entry {entry.chain}#{entry.seq}: does not name #{before.seq}'s hash"
                )
        elif entry.seq == 1 and entry.prev != GENESIS:
            problems.append(f"entry {entry.chain}#1: does not start the chain")
    return problems
