"""The evidence bundle's form: what one node can show about one document, as one JSON
document, written and read (exchange/bundle.py checks it).

``{"format": "lienthong-evidence/1", "document_id", "node", "exported_at", "packages":
[{message_id, digest, bytes}], "entries": [LogEntry.record()], "checkpoints": [signed
records], "parent_checkpoints": a parent's signed checkpoint file or null, "crls": [{name,
sha256, bytes}]}``; bytes in base64. ``entries`` is, per chain of the node's store that
holds events about the document, every entry from the first one about it to the head at
export: receipts, statuses and fetches are events in it, never loose. docs/evidence.md is
the specification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.errors import EvidenceUnreadable
from exchange.evidence import Event, EventKind, LogEntry

FORMAT = "lienthong-evidence/1"


@dataclass(frozen=True)
class PackageCopy:
    message_id: str
    digest: str  # as the exporting node recorded it
    data: bytes


@dataclass(frozen=True)
class CrlFile:
    name: str
    sha256: str  # as the exporting node computed it
    data: bytes  # the file as configured: PEM or DER


@dataclass(frozen=True)
class Bundle:
    document_id: str
    node: str
    exported_at: datetime
    entries: tuple[LogEntry, ...]
    packages: tuple[PackageCopy, ...]
    checkpoints: tuple[dict[str, Any], ...]  # the node's own
    parent_checkpoints: dict[str, Any] | None  # a parent's checkpoint file, as supplied
    crls: tuple[CrlFile, ...]


def document_messages(events: Iterable[Event], document_id: str) -> set[str]:
    """The messages of a document: those its events name (the document's packages, its
    statuses, updates and revokes)."""
    return {e.message_id for e in events if e.document_id == document_id and e.message_id}


def is_about(event: Event, document_id: str, message_ids: Iterable[str]) -> bool:
    return event.document_id == document_id or (
        event.message_id is not None and event.message_id in message_ids
    )


def own_checkpoints(entries: Iterable[LogEntry], node: str) -> list[dict[str, Any]]:
    """The checkpoints the node recorded in its own chain (CHECKPOINT events of its own)."""
    return [
        dict(e.event.detail["checkpoint"])
        for e in entries
        if e.event.kind is EventKind.CHECKPOINT
        and e.event.node == node
        and isinstance(e.event.detail.get("checkpoint"), Mapping)
    ]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def build_bundle(
    *,
    document_id: str,
    node: str,
    exported_at: datetime,
    entries: Sequence[LogEntry],
    packages: Sequence[PackageCopy],
    crls: Sequence[tuple[str, bytes]] = (),
    parent_checkpoints: Mapping[str, Any] | None = None,
) -> bytes:
    """The bundle's bytes. Its own checkpoints are those the node recorded in ``entries``."""
    body = {
        "format": FORMAT,
        "document_id": document_id,
        "node": node,
        "exported_at": exported_at.astimezone(UTC).isoformat(timespec="milliseconds"),
        "packages": [
            {"message_id": p.message_id, "digest": p.digest, "bytes": _b64(p.data)}
            for p in packages
        ],
        "entries": [e.record() for e in entries],
        "checkpoints": own_checkpoints(entries, node),
        "parent_checkpoints": dict(parent_checkpoints) if parent_checkpoints else None,
        "crls": [
            {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "bytes": _b64(data)}
            for name, data in crls
        ],
    }
    return json.dumps(body, ensure_ascii=False, indent=1, sort_keys=True).encode()


def _unb64(value: object, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EvidenceUnreadable(f"{what}: not base64") from exc


def _list(body: Mapping[str, Any], name: str) -> list[Mapping[str, Any]]:
    value = body.get(name)
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise EvidenceUnreadable(f"'{name}' must be a list of records")
    return value


def _entry(index: int, record: Mapping[str, Any]) -> LogEntry:
    try:
        entry = LogEntry.from_record(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise EvidenceUnreadable(f"entry {index + 1} of the bundle is not an entry: {exc}") from exc
    if entry.event.at.utcoffset() is None:
        raise EvidenceUnreadable(f"entry {index + 1} of the bundle: its time has no zone")
    return entry


def read_bundle(data: bytes) -> Bundle:
    """The bundle ``data`` holds, read but not yet checked; EvidenceUnreadable if it is not
    one (the message says which part)."""
    try:
        body = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EvidenceUnreadable(f"not JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise EvidenceUnreadable(f"not an evidence bundle (format {FORMAT})")
    entries = [_entry(index, record) for index, record in enumerate(_list(body, "entries"))]
    try:
        packages = tuple(
            PackageCopy(
                str(p["message_id"]),
                str(p["digest"]),
                _unb64(p["bytes"], f"package {p['message_id']}"),
            )
            for p in _list(body, "packages")
        )
        crls = tuple(
            CrlFile(str(c["name"]), str(c["sha256"]), _unb64(c["bytes"], f"CRL {c['name']}"))
            for c in _list(body, "crls")
        )
        exported_at = datetime.fromisoformat(str(body["exported_at"]))
        document_id, node = str(body["document_id"]), str(body["node"])
    except (KeyError, ValueError) as exc:
        raise EvidenceUnreadable(f"a package, a CRL or the header is incomplete: {exc}") from exc
    if exported_at.utcoffset() is None:
        raise EvidenceUnreadable("'exported_at' has no time zone")
    parent = body.get("parent_checkpoints")
    if parent is not None and not isinstance(parent, dict):
        raise EvidenceUnreadable("'parent_checkpoints' must be a checkpoint file or null")
    return Bundle(
        document_id=document_id,
        node=node,
        exported_at=exported_at,
        entries=tuple(entries),
        packages=packages,
        checkpoints=tuple(dict(c) for c in _list(body, "checkpoints")),
        parent_checkpoints=parent,
        crls=crls,
    )
