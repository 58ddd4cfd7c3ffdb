"""The transport envelope: what the entry node vouches for, and the trail of hops.

The entry node signs a small record with its node key (ECDSA P-256 with SHA-256, or
Ed25519): message id, SHA-256 and size of the package bytes, sender, recipients,
verification level, origin node, time and hop limit. Every node that handles the package
appends a hop record, signed with its own key, that names the SHA-256 of the record
before it, so the trail cannot be reordered or cut in the middle. Intermediate and
destination nodes check the envelope instead of re-judging the package's certificate
(DESIGN §3.4). docs/wire.md is the specification.

Wire form: UTF-8 JSON, keys sorted, no insignificant whitespace. The signature covers the
canonical JSON of the record without its ``sig`` member.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from exchange.errors import EnvelopeInvalid, HopLimitExceeded, PermanentFault

VERSION = 1
DEFAULT_HOP_LIMIT = 8

NodePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NodePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class NodeKey:
    node_id: str
    key: NodePrivateKey

    @classmethod
    def from_pem(cls, node_id: str, pem: bytes) -> NodeKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise PermanentFault(f"node {node_id}: the node key must be ECDSA or Ed25519")
        return cls(node_id, key)

    @property
    def algorithm(self) -> str:
        return "Ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "ES256"

    def sign(self, record: Mapping[str, Any]) -> dict[str, Any]:
        payload = canonical(record)
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            value = self.key.sign(payload)
        else:
            value = self.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        return {
            **record,
            "sig": {"alg": self.algorithm, "node": self.node_id, "value": _b64(value)},
        }


SIG_FIELDS = frozenset({"alg", "node", "value"})


def verify_record(record: Mapping[str, Any], keys: Mapping[str, NodePublicKey], what: str) -> str:
    """The node that signed ``record``. The ``sig`` member must be exactly what a node
    writes (alg, node, value in canonical base64): anything else in it is unsigned, and
    the last hop's ``sig`` is covered by no later record, so nothing may ride there."""
    sig = record.get("sig")
    if not isinstance(sig, dict):
        raise EnvelopeInvalid(f"{what} is not signed")
    if set(sig) != SIG_FIELDS:
        raise EnvelopeInvalid(f"{what}: its signature must name alg, node and value, no more")
    node = sig.get("node")
    key = keys.get(node) if isinstance(node, str) else None
    if key is None:
        raise EnvelopeInvalid(f"{what} is signed by node {node!r}, which this node does not know")
    try:
        payload = canonical({k: v for k, v in record.items() if k != "sig"})
        value = base64.b64decode(sig.get("value", ""), validate=True)
        if _b64(value) != sig.get("value"):  # unused bits set: other text, the same bytes
            raise EnvelopeInvalid(f"{what}: the signature is not in canonical base64")
        if isinstance(key, ed25519.Ed25519PublicKey) and sig.get("alg") == "Ed25519":
            key.verify(value, payload)
        elif isinstance(key, ec.EllipticCurvePublicKey) and sig.get("alg") == "ES256":
            key.verify(value, payload, ec.ECDSA(hashes.SHA256()))
        else:
            raise EnvelopeInvalid(
                f"{what}: algorithm {sig.get('alg')!r} does not match node {node}'s key"
            )
    except (InvalidSignature, ValueError, TypeError) as exc:  # UnicodeError is a ValueError
        raise EnvelopeInvalid(f"{what}: the signature of node {node} does not verify") from exc
    return str(node)


@dataclass(frozen=True)
class Envelope:
    message_id: str
    sha256: str
    size: int
    kind: str
    sender: str
    recipients: tuple[str, ...]
    document_id: str | None
    level: str
    origin: str
    issued_at: str
    hop_limit: int
    hops: tuple[str, ...]  # node ids, entry node first
    status_code: str | None = None
    status_at: str | None = None  # a status's edXML Timestamp, with its offset (ISO 8601)
    hop_times: tuple[str, ...] = ()  # when each hop's node signed its record (ISO 8601, UTC)
    business: int = 0  # 0 new, 1 revoke, 2 update, 3 replace (edXML BussinessDocType)
    about: str | None = None  # the DocumentId a revoke or update is about
    removed: tuple[str, ...] = ()  # an update's recipients to withdraw it from
    # recipients a node on the way handed to an upstream axis (its hop record says so):
    # served, so no node after it judges them (docs/bridge.md)
    bridged: tuple[str, ...] = ()

    @property
    def last_node(self) -> str:
        return self.hops[-1]


def seal(
    key: NodeKey,
    *,
    message_id: str,
    data: bytes | tuple[str, int],
    kind: str,
    sender: str,
    recipients: Sequence[str],
    document_id: str | None,
    level: str,
    when: datetime | None = None,
    hop_limit: int = DEFAULT_HOP_LIMIT,
    status_code: str | None = None,
    business: Mapping[str, Any] | None = None,
    status_at: str | None = None,
    pdf_signatures: Sequence[Mapping[str, Any]] = (),
    bridged: Sequence[str] = (),
) -> bytes:
    """The entry node's signed envelope, with its own first hop. ``business`` says what
    a revoke, update or replace is about: {"type", "about" (the DocumentId), "removed"}.
    ``pdf_signatures``: below strict, what the entry node found of the attached PDFs'
    signatures (exchange/pades.py records), carried to the receipts at every destination.
    ``data`` may be given as (SHA-256, size) of bytes spooled elsewhere (a large package)."""
    sha256, size = (
        data if isinstance(data, tuple) else (hashlib.sha256(data).hexdigest(), len(data))
    )
    issued = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    body = key.sign(
        {
            "v": VERSION,
            "message_id": message_id,
            "sha256": sha256,
            "size": size,
            "kind": kind,
            "sender": sender,
            "recipients": list(recipients),
            "document_id": document_id,
            "level": level,
            "origin": key.node_id,
            "issued_at": issued,
            "hop_limit": hop_limit,
            **({"status_code": status_code} if status_code else {}),
            **({"status_at": status_at} if status_at else {}),
            **({"business": dict(business)} if business else {}),
            **({"pdf_signatures": [dict(p) for p in pdf_signatures]} if pdf_signatures else {}),
        }
    )
    return append_hop(canonical({"envelope": body, "hops": []}), key, when=when, bridged=bridged)


def append_hop(
    wire: bytes, key: NodeKey, *, when: datetime | None = None, bridged: Sequence[str] = ()
) -> bytes:
    """Add this node's signed hop record to the trail; ``bridged``: the recipients this
    node hands to an upstream axis (the nodes after it leave them alone)."""
    document = _load(wire)
    hops = document["hops"]
    previous = hops[-1] if hops else document["envelope"]
    limit = int(document["envelope"].get("hop_limit", DEFAULT_HOP_LIMIT))
    if len(hops) >= limit:
        raise HopLimitExceeded(
            f"message {document['envelope'].get('message_id')} has crossed {len(hops)} nodes, "
            f"its hop limit; the nodes' directories disagree about where it belongs"
        )
    at = (when or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="milliseconds")
    record: dict[str, Any] = {
        "node": key.node_id,
        "at": at,
        "prev": hashlib.sha256(canonical(previous)).hexdigest(),
    }
    if bridged:
        record["bridged"] = sorted(set(bridged))
    hops.append(key.sign(record))
    return canonical(document)


def _load(wire: bytes) -> dict[str, Any]:
    try:
        document = json.loads(wire)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # nesting past the stack
        raise EnvelopeInvalid(f"the envelope is not JSON: {str(exc)[:200]}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("envelope"), dict):
        raise EnvelopeInvalid("the envelope has no 'envelope' record")
    if not isinstance(document.get("hops"), list):
        raise EnvelopeInvalid("the envelope has no 'hops' list")
    return document


def _digest(record: Mapping[str, Any]) -> str:
    try:
        return hashlib.sha256(canonical(record)).hexdigest()
    except ValueError as exc:  # a lone surrogate (JSON "\ud800") is not UTF-8
        raise EnvelopeInvalid(f"a record of the envelope cannot be written back: {exc}") from exc


def envelope_record(wire: bytes) -> Mapping[str, Any]:
    """The entry node's record of an envelope this node stored (checked when it came in)."""
    record: Mapping[str, Any] = _load(wire)["envelope"]
    return record


def envelope_recipients(wire: bytes) -> tuple[str, ...]:
    """The recipients named by an envelope this node stored (checked when it came in)."""
    return tuple(str(r) for r in _load(wire)["envelope"].get("recipients", []))


def envelope_hops(wire: bytes) -> tuple[tuple[str, str], ...]:
    """(node, when) of each hop record of an envelope this node stored."""
    return tuple(
        (str(h.get("node", "?")), str(h.get("at", "")))
        for h in _load(wire)["hops"]
        if isinstance(h, dict)
    )


def open_envelope(wire: bytes, data: bytes | None, keys: Mapping[str, NodePublicKey]) -> Envelope:
    """Check the entry node's signature, the bytes' digest and every hop, in order. With
    ``data`` None (a claim: the bytes came over HTTP), the transfer checked the digest the
    envelope names, and only the rest is checked here."""
    document = _load(wire)
    body = document["envelope"]
    if body.get("v") != VERSION:
        raise EnvelopeInvalid(
            f"envelope version {body.get('v')!r} is not understood (expected {VERSION})"
        )
    signer = verify_record(body, keys, "the envelope")
    if signer != body.get("origin"):
        raise EnvelopeInvalid(
            f"the envelope names origin {body.get('origin')!r} but node {signer} signed it"
        )
    if data is not None and (
        hashlib.sha256(data).hexdigest() != body.get("sha256") or len(data) != body.get("size")
    ):
        raise EnvelopeInvalid("the package bytes do not match the envelope's SHA-256 and size")
    previous: Mapping[str, Any] = body
    trail, times, bridged = [], [], []
    for index, hop in enumerate(document["hops"]):
        if not isinstance(hop, dict):
            raise EnvelopeInvalid(f"hop {index + 1} is not a record")
        node = verify_record(hop, keys, f"hop {index + 1}")
        if hop.get("node") != node:
            raise EnvelopeInvalid(
                f"hop {index + 1} names node {hop.get('node')!r} but {node} signed it"
            )
        if hop.get("prev") != _digest(previous):
            raise EnvelopeInvalid(f"hop {index + 1} does not follow the record before it")
        trail.append(node)
        times.append(str(hop.get("at", "")))
        handed = hop.get("bridged", [])
        if not isinstance(handed, list) or not all(isinstance(o, str) for o in handed):
            raise EnvelopeInvalid(f"hop {index + 1}: 'bridged' is not a list of OrganIds")
        bridged += handed
        previous = hop
    if not trail or trail[0] != signer:
        raise EnvelopeInvalid("the first hop must be the entry node's")
    try:
        return _envelope(body, signer, trail, times, bridged)
    except (KeyError, TypeError, ValueError) as exc:  # signed, by a node that wrote nonsense
        raise EnvelopeInvalid(
            f"the envelope of node {signer} does not parse: {type(exc).__name__}: {exc}"[:300]
        ) from exc


def _envelope(
    body: Mapping[str, Any], signer: str, trail: list[str], times: list[str], bridged: list[str]
) -> Envelope:
    if len(trail) > int(body.get("hop_limit", DEFAULT_HOP_LIMIT)):
        raise HopLimitExceeded(f"message {body.get('message_id')} is past its hop limit")
    if not isinstance(body.get("recipients", []), list):
        raise TypeError("'recipients' is not a list")
    return Envelope(
        message_id=str(body["message_id"]),
        sha256=str(body["sha256"]),
        size=int(body["size"]),
        kind=str(body["kind"]),
        sender=str(body["sender"]),
        recipients=tuple(str(r) for r in body.get("recipients", [])),
        document_id=body.get("document_id"),
        level=str(body["level"]),
        origin=signer,
        issued_at=str(body["issued_at"]),
        hop_limit=int(body["hop_limit"]),
        hops=tuple(trail),
        status_code=body.get("status_code"),
        status_at=str(body["status_at"]) if body.get("status_at") else None,
        hop_times=tuple(times),
        bridged=tuple(dict.fromkeys(bridged)),
        **_business(body.get("business")),
    )


def _business(record: object) -> dict[str, Any]:
    if not isinstance(record, dict):
        return {}
    if record.get("type") not in (0, 1, 2, 3):
        raise EnvelopeInvalid(f"the envelope's business type {record.get('type')!r} is unknown")
    try:
        return {
            "business": int(record.get("type", 0)),
            "about": str(record["about"]) if record.get("about") else None,
            "removed": tuple(str(r) for r in record.get("removed", [])),
        }
    except (TypeError, ValueError) as exc:
        raise EnvelopeInvalid(f"the envelope's business record does not parse: {exc}") from exc
