"""Checking an evidence bundle offline, with nothing but the nodes' public keys.

What holds together: each chain's run of entries (no record edited, removed or moved);
every package's bytes against its SHA-256 and the ACCEPTED or RECEIVED entry that names
it; every delivery and fetch at the node against an arrival in the segment; the node's
checkpoints (signatures, and the entries at the seq they sign); the parent's copies of
them, which alone catch a chain its operator rewrote consistently (docs/evidence.md,
"What it does not prove"). The bundle's form is exchange/bundle_format.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exchange.bundle_crl import crl_lines
from exchange.bundle_format import (
    FORMAT,
    Bundle,
    PackageCopy,
    build_bundle,
    document_messages,
    is_about,
    own_checkpoints,
    read_bundle,
)
from exchange.checkpoint import Checkpoint, checkpoints_match, open_checkpoint, open_checkpoint_file
from exchange.envelope import PeerKey, canonical
from exchange.errors import CheckpointInvalid, EvidenceUnreadable
from exchange.evidence import Event, EventKind, LogEntry, broken_links
from exchange.evidence_summary import ARRIVALS, document_lines, when

__all__ = [
    "FORMAT",
    "PackageCopy",
    "ReceiptCheck",
    "Verdict",
    "build_bundle",
    "read_bundle",
    "verify_bundle",
]

ReceiptCheck = Callable[[bytes, Event, str | None], Sequence[str]]
"""The receipt hook: a DELIVERED event's signed receipt (its bytes), the event, and the
SHA-256 of the bundle's package for its message (None when the bundle has none); the
problems with the receipt. exchange/bundle_receipts.py makes one (``receipt_checker``)."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    problems: tuple[str, ...]  # one line each; empty when ok
    summary: tuple[str, ...]  # what the evidence shows, and how far it was checked


def _place(entry: LogEntry) -> str:
    return f"entry {entry.chain}#{entry.seq}"


def _runs(entries: Sequence[LogEntry]) -> dict[str, list[LogEntry]]:
    runs: dict[str, list[LogEntry]] = {}
    for entry in entries:
        runs.setdefault(entry.chain, []).append(entry)
    return runs


def _package_problems(bundle: Bundle, about: list[LogEntry]) -> list[str]:
    problems: list[str] = []
    here = [e for e in about if e.event.node == bundle.node]
    arrivals = {e.event.message_id: e for e in here if e.event.kind in ARRIVALS}
    carried: dict[str, str] = {}
    for package in bundle.packages:
        what = f"package of message {package.message_id}"
        if package.message_id in carried:
            problems.append(f"{what}: in the bundle twice")
        carried[package.message_id] = hashlib.sha256(package.data).hexdigest()
        if carried[package.message_id] != package.digest:
            problems.append(f"{what}: its bytes do not match its SHA-256 {package.digest}")
        if not any(
            e.event.message_id == package.message_id for e in about if e.event.kind in ARRIVALS
        ):
            problems.append(f"{what}: loose, no ACCEPTED or RECEIVED entry of the segment names it")
    for entry in about:
        event, actual = entry.event, carried.get(entry.event.message_id or "")
        if actual is not None and event.digest is not None and event.digest != actual:
            problems.append(
                f"{_place(entry)}: records SHA-256 {event.digest} for message "
                f"{event.message_id}, but the bundle's package has {actual}"
            )
        if event.node != bundle.node:
            continue
        if event.kind in ARRIVALS and actual is None:
            problems.append(
                f"{_place(entry)}: the package of message {event.message_id} is missing"
            )
        if (
            event.kind in (EventKind.DELIVERED, EventKind.FETCHED)
            and event.message_id not in arrivals
        ):
            problems.append(
                f"{_place(entry)}: message {event.message_id} was {event.kind.value} at node "
                f"{bundle.node}, but its arrival there is not in the segment"
            )
    return problems


def _open(
    records: Sequence[Mapping[str, Any]], keys: Mapping[str, PeerKey], node: str
) -> tuple[list[Checkpoint], list[str]]:
    opened: list[Checkpoint] = []
    problems: list[str] = []
    seen: set[bytes] = set()
    for record in records:
        if canonical(record) in seen:
            continue
        seen.add(canonical(record))
        try:
            checkpoint = open_checkpoint(record, keys)
        except CheckpointInvalid as exc:
            problems.append(f"checkpoint refused: {exc.message}")
            continue
        if checkpoint.node != node:
            problems.append(f"{checkpoint.label}: not of node {node}, whose chain the bundle holds")
            continue
        opened.append(checkpoint)
    return opened, problems


def _parent_records(
    bundle: Bundle, keys: Mapping[str, PeerKey], supplied: Sequence[Mapping[str, Any]]
) -> tuple[list[Mapping[str, Any]], list[str], list[str]]:
    """The parent's checkpoints: those the bundle carries (in a file the parent signed),
    and those the verifier supplies; with problems and notes."""
    records, problems, notes = list(supplied), [], []
    if supplied:
        notes.append(f"{len(supplied)} checkpoint(s) supplied by the verifier")
    if bundle.parent_checkpoints is not None:
        try:
            keeper, node, carried = open_checkpoint_file(bundle.parent_checkpoints, keys)
        except CheckpointInvalid as exc:
            problems.append(f"the parent's checkpoint file in the bundle: {exc.message}")
        else:
            if node != bundle.node:
                problems.append(f"the checkpoint file in the bundle is node {node}'s, not ours")
            elif keeper == bundle.node:  # a node cannot vouch for its own history
                problems.append(
                    f"the checkpoint file in the bundle was signed by node {keeper} itself, "
                    "not by its parent"
                )
            else:
                records += carried
                notes.append(f"{len(carried)} checkpoint(s) kept by node {keeper}, in the bundle")
    return records, problems, notes


def _checkpoint_problems(
    bundle: Bundle,
    keys: Mapping[str, PeerKey],
    supplied: Sequence[Mapping[str, Any]],
    about: list[LogEntry],
) -> tuple[list[str], list[str]]:
    runs = _runs(bundle.entries)
    own_records = [*bundle.checkpoints, *own_checkpoints(bundle.entries, bundle.node)]
    own, problems = _open(own_records, keys, bundle.node)
    records, parent_problems, notes = _parent_records(bundle, keys, supplied)
    parent, refused = _open(records, keys, bundle.node)
    problems += parent_problems + refused
    problems += checkpoints_match(list(bundle.entries), own + parent)
    for checkpoint in own + parent:
        run = runs.get(checkpoint.chain)
        if run and checkpoint.seq > run[-1].seq and checkpoint.at <= bundle.exported_at:
            problems.append(
                f"chain {checkpoint.chain} ends at #{run[-1].seq} in a bundle exported "
                f"{when(bundle.exported_at)}, but node {checkpoint.node} had signed its head "
                f"#{checkpoint.seq} at {when(checkpoint.at)}: entries were cut from its end"
            )
    for chain, run in runs.items():
        last = max((e.seq for e in about if e.chain == chain), default=None)
        if last is None:
            continue
        covering = sorted(
            c.seq for c in parent if c.chain == chain and last <= c.seq <= run[-1].seq
        )
        if covering:
            notes.append(
                f"chain {chain}: checked up to #{covering[-1]} against {len(covering)} parent "
                f"checkpoint(s) at or after #{last}, the last entry about the document"
            )
        else:
            notes.append(
                f"chain {chain}: no parent checkpoint covers #{last}, the last entry about the "
                "document; a chain rewritten by the node's own operator would go unnoticed"
            )
    return problems, notes


def _receipt_problems(
    bundle: Bundle, about: list[LogEntry], check: ReceiptCheck | None
) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    carried = {p.message_id: hashlib.sha256(p.data).hexdigest() for p in bundle.packages}
    held = [
        e for e in about if e.event.kind is EventKind.DELIVERED and e.event.detail.get("receipt")
    ]
    for entry in held:
        try:
            data = base64.b64decode(str(entry.event.detail["receipt"]), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{_place(entry)}: its receipt is not base64")
            continue
        if check is not None:
            package = carried.get(entry.event.message_id or "")
            problems += [
                f"{_place(entry)}: receipt: {p}" for p in check(data, entry.event, package)
            ]
    if not held:
        return problems, []
    if check is None:
        return problems, [f"{len(held)} signed receipt(s) present, not checked (no receipt reader)"]
    return problems, [f"{len(held)} signed receipt(s) checked"]


def verify_bundle(
    bundle_bytes: bytes,
    node_keys: Mapping[str, PeerKey],
    parent_checkpoints: Sequence[Mapping[str, Any]] = (),
    *,
    check_receipt: ReceiptCheck | None = None,
) -> Verdict:
    """Check a bundle offline. ``node_keys``: the nodes' public keys, by node id (the
    bundle's node, its parent); ``parent_checkpoints``: checkpoint records the verifier got
    from the parent itself (exchange/checkpoint.py, ``open_checkpoint_file``);
    ``check_receipt``: the hook that verifies signed delivery receipts."""
    try:
        bundle = read_bundle(bundle_bytes)
    except EvidenceUnreadable as exc:
        return Verdict(False, (f"the bundle cannot be read: {exc.message}",), ())
    problems: list[str] = []
    runs = _runs(bundle.entries)
    for run in runs.values():
        problems += broken_links(run)
    messages = document_messages((e.event for e in bundle.entries), bundle.document_id)
    about = [e for e in bundle.entries if is_about(e.event, bundle.document_id, messages)]
    if not about:
        problems.append(f"the segment holds no entry about document {bundle.document_id}")
    problems += _package_problems(bundle, about)
    checkpoint_problems, notes = _checkpoint_problems(bundle, node_keys, parent_checkpoints, about)
    receipt_problems, receipt_notes = _receipt_problems(bundle, about, check_receipt)
    crl_problems, crl_notes = crl_lines(bundle, [e.event for e in about])
    problems += checkpoint_problems + receipt_problems + crl_problems
    summary = [
        f"evidence of node {bundle.node}, exported {when(bundle.exported_at)}",
        *(
            f"chain {chain}: entries #{run[0].seq} to #{run[-1].seq}, "
            f"{sum(1 for e in about if e.chain == chain)} about the document"
            for chain, run in runs.items()
        ),
        *document_lines([e.event for e in about], bundle.document_id),
        *notes,
        *receipt_notes,
        *crl_notes,
    ]
    return Verdict(not problems, tuple(problems), tuple(summary))
