"""Checkpoints: a node's signed word on the head of one of its evidence chains.

A node signs the head (seq, hash) of its chain now and then and reports the checkpoint to
its parent, whose log keeps it as a CHECKPOINT event. An operator who later rewrites the
node's chain (edits a record and recomputes every later hash, so that the chain holds
together again) cannot change what the parent keeps: the rewritten entry at a
checkpointed seq no longer has the hash the node signed. docs/evidence.md is the
specification.

A checkpoint record: ``{"v": 1, "node", "chain", "seq", "hash", "at", "sig"}``, signed
like every node record (exchange/envelope.py, ``NodeKey.sign``). A checkpoint file is
what a parent hands an auditor: the checkpoints it keeps for one child, signed as a whole
by the parent (the keeper), so the child's operator cannot pass off a file of their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from exchange.envelope import NodeKey, PeerKey, canonical, verify_record
from exchange.errors import CheckpointInvalid, EnvelopeInvalid
from exchange.evidence import Event, EventKind, LogEntry

VERSION = 1
FILE_FORMAT = "lienthong-checkpoints/1"


@dataclass(frozen=True)
class Checkpoint:
    node: str  # the node whose chain it is, and who signed it
    chain: str
    seq: int
    hash: str
    at: datetime
    record: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"node {self.node}'s checkpoint of {self.chain}#{self.seq}"


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds")


def make_checkpoint(
    key: NodeKey, chain: str, head: tuple[int, str], at: datetime
) -> dict[str, Any]:
    """The signed record of ``chain``'s head (seq, hash) at ``at``."""
    seq, digest = head
    return key.sign(
        {
            "v": VERSION,
            "node": key.node_id,
            "chain": chain,
            "seq": seq,
            "hash": digest,
            "at": _iso(at),
        }
    )


def read_checkpoint(record: Mapping[str, Any]) -> Checkpoint:
    """The checkpoint a record states, its signature not yet checked."""
    if not isinstance(record, Mapping):
        raise CheckpointInvalid("a checkpoint must be a record")
    node, chain, seq, digest = (record.get(k) for k in ("node", "chain", "seq", "hash"))
    if record.get("v") != VERSION:
        raise CheckpointInvalid(f"checkpoint version {record.get('v')!r} is not {VERSION}")
    if not (isinstance(node, str) and isinstance(chain, str) and isinstance(digest, str)):
        raise CheckpointInvalid("a checkpoint names its node, chain and hash as text")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise CheckpointInvalid(f"node {node}'s checkpoint of {chain}: seq must be a whole number")
    try:
        at = datetime.fromisoformat(str(record.get("at")))
    except ValueError as exc:
        raise CheckpointInvalid(f"node {node}'s checkpoint of {chain}#{seq}: bad time") from exc
    if at.utcoffset() is None:
        raise CheckpointInvalid(f"node {node}'s checkpoint of {chain}#{seq}: time without zone")
    return Checkpoint(node, chain, seq, digest, at, dict(record))


def open_checkpoint(record: Mapping[str, Any], keys: Mapping[str, PeerKey]) -> Checkpoint:
    """The checkpoint, once its signature verifies with the key of the node it names."""
    checkpoint = read_checkpoint(record)
    try:
        signer = verify_record(record, keys, checkpoint.label)
    except EnvelopeInvalid as exc:
        raise CheckpointInvalid(exc.message) from exc
    if signer != checkpoint.node:
        raise CheckpointInvalid(f"{checkpoint.label} is signed by node {signer}")
    return checkpoint


def checkpoint_event(checkpoint_record: Mapping[str, Any], at: datetime, report_to: str) -> Event:
    """The CHECKPOINT event that records a checkpoint in the node's own log, reported to
    ``report_to`` (the parent), whose log then keeps it too: once per (node, chain, seq)."""
    checkpoint = read_checkpoint(checkpoint_record)
    return Event(
        EventKind.CHECKPOINT,
        f"checkpoint|{checkpoint.node}|{checkpoint.chain}|{checkpoint.seq}",
        at,
        checkpoint.node,
        detail={"checkpoint": dict(checkpoint_record)},
        report_to=report_to,
    )


def checkpoints_match(entries: list[LogEntry], checkpoints: list[Checkpoint]) -> list[str]:
    """Where ``entries`` (of the checkpointed node's chains) disagree with ``checkpoints``
    (opened, of that node): an entry at a checkpointed seq with another hash is history
    rewritten after the checkpoint; two checkpoints of one seq with two hashes, a node
    that signed two histories."""
    problems: list[str] = []
    at_place = {(entry.chain, entry.seq): entry for entry in entries}
    signed: dict[tuple[str, str, int], Checkpoint] = {}
    for checkpoint in checkpoints:
        place = (checkpoint.node, checkpoint.chain, checkpoint.seq)
        other = signed.setdefault(place, checkpoint)
        if other.hash != checkpoint.hash:
            problems.append(
                f"node {checkpoint.node} signed two different heads of {checkpoint.chain}"
                f"#{checkpoint.seq} ({_iso(other.at)} and {_iso(checkpoint.at)})"
            )
        entry = at_place.get((checkpoint.chain, checkpoint.seq))
        if entry is not None and entry.hash != checkpoint.hash:
            problems.append(
                f"entry {entry.chain}#{entry.seq}: its hash is not the one node "
                f"{checkpoint.node} signed at {_iso(checkpoint.at)}: the chain was rewritten"
            )
    return problems


# --- the file a parent hands an auditor -------------------------------------------------


def make_checkpoint_file(
    keeper: NodeKey, node: str, records: Sequence[Mapping[str, Any]], at: datetime
) -> bytes:
    """The checkpoints ``keeper`` keeps for ``node``, signed by the keeper."""
    body = keeper.sign(
        {
            "format": FILE_FORMAT,
            "keeper": keeper.node_id,
            "node": node,
            "exported_at": _iso(at),
            "checkpoints": [dict(r) for r in records],
        }
    )
    return canonical(body)


def open_checkpoint_file(
    data: bytes | Mapping[str, Any], keys: Mapping[str, PeerKey]
) -> tuple[str, str, list[dict[str, Any]]]:
    """(keeper, node, checkpoint records) of a checkpoint file whose keeper's signature
    verifies; each checkpoint's own signature is the verifier's to check."""
    try:
        body = json.loads(data) if isinstance(data, bytes) else data
    except (ValueError, RecursionError) as exc:
        raise CheckpointInvalid(f"the checkpoint file is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(body, Mapping) or body.get("format") != FILE_FORMAT:
        raise CheckpointInvalid(f"not a checkpoint file (format {FILE_FORMAT})")
    try:
        keeper = verify_record(body, keys, "the checkpoint file")
    except EnvelopeInvalid as exc:
        raise CheckpointInvalid(exc.message) from exc
    records, node = body.get("checkpoints"), body.get("node")
    if (
        keeper != body.get("keeper")
        or not isinstance(node, str)
        or not isinstance(records, list)
        or not all(isinstance(r, Mapping) for r in records)
    ):
        raise CheckpointInvalid(f"the checkpoint file signed by node {keeper} is malformed")
    return keeper, node, [dict(r) for r in records]
