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

VERSION = 2  # the newest envelope version this code reads and can write
READS = (1, 2)  # this version and the one before (docs/wire.md, "Versions")
WRITES = 1  # written by default: the older, which every neighbour of this release reads
DEFAULT_HOP_LIMIT = 8

NodePrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NodePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


@dataclass(frozen=True)
class KeyRing:
    """The keys pinned for one node: its current one and those it had before a rotation,
    each with its kid (the SHA-256 fingerprint of its node certificate, hex). A record of
    version 2 names its kid; a version 1 record is tried against each."""

    keys: tuple[tuple[str, NodePublicKey], ...]


PeerKey = NodePublicKey | KeyRing


def canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class NodeKey:
    node_id: str
    key: NodePrivateKey
    kid: str | None = None  # the fingerprint of this key's node certificate (version 2)
    version: int = WRITES  # the envelope version this node writes

    @classmethod
    def from_pem(cls, node_id: str, pem: bytes) -> NodeKey:
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise PermanentFault(f"node {node_id}: the node key must be ECDSA or Ed25519")
        return cls(node_id, key)

    @property
    def algorithm(self) -> str:
        return "Ed25519" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "ES256"

    def sign(self, record: Mapping[str, Any], *, kid: bool = False) -> dict[str, Any]:
        """``record`` with its ``sig``; with ``kid`` (version 2 records), the signature
        names the node certificate whose key made it."""
        payload = canonical(record)
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            value = self.key.sign(payload)
        else:
            value = self.key.sign(payload, ec.ECDSA(hashes.SHA256()))
        sig = {"alg": self.algorithm, "node": self.node_id, "value": _b64(value)}
        if kid and self.kid is not None:
            sig["kid"] = self.kid
        return {**record, "sig": sig}


SIG_FIELDS = frozenset({"alg", "node", "value"})
SIG_FIELDS_V2 = SIG_FIELDS | {"kid"}


def _candidates(
    pinned: PeerKey | None, sig: Mapping[str, Any], node: object, what: str
) -> list[NodePublicKey]:
    if pinned is None:
        raise EnvelopeInvalid(f"{what} is signed by node {node!r}, which this node does not know")
    if not isinstance(pinned, KeyRing):
        return [pinned]
    kid = sig.get("kid")
    if kid is None:
        return [key for _, key in pinned.keys]
    chosen = [key for fingerprint, key in pinned.keys if fingerprint == kid]
    if not chosen:
        raise EnvelopeInvalid(
            f"{what} is signed with key {str(kid)[:16]}… of node {node}, which this node "
            "has not pinned (its new node certificate is not installed here yet?)"
        )
    return chosen


def verify_record(record: Mapping[str, Any], keys: Mapping[str, PeerKey], what: str) -> str:
    """The node that signed ``record``. The ``sig`` member must be exactly what a node
    writes (alg, node, value in canonical base64, and in version 2 kid): anything else in
    it is unsigned, and the last hop's ``sig`` is covered by no later record, so nothing
    may ride there. Of several keys pinned for the node, the one the kid names, or (no
    kid) any one of them, must verify."""
    sig = record.get("sig")
    if not isinstance(sig, dict):
        raise EnvelopeInvalid(f"{what} is not signed")
    if set(sig) not in (SIG_FIELDS, SIG_FIELDS_V2):
        raise EnvelopeInvalid(f"{what}: its signature must name alg, node and value, no more")
    node = sig.get("node")
    candidates = _candidates(keys.get(node) if isinstance(node, str) else None, sig, node, what)
    try:
        payload = canonical({k: v for k, v in record.items() if k != "sig"})
        value = base64.b64decode(sig.get("value", ""), validate=True)
        if _b64(value) != sig.get("value"):  # unused bits set: other text, the same bytes
            raise EnvelopeInvalid(f"{what}: the signature is not in canonical base64")
    except (ValueError, TypeError) as exc:  # UnicodeError is a ValueError
        raise EnvelopeInvalid(f"{what}: the signature of node {node} does not verify") from exc
    for key in candidates:
        if not _fits(key, sig.get("alg")):
            continue
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(value, payload)
            else:
                key.verify(value, payload, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        return str(node)
    if not any(_fits(key, sig.get("alg")) for key in candidates):
        raise EnvelopeInvalid(
            f"{what}: algorithm {sig.get('alg')!r} does not match node {node}'s key"
        )
    raise EnvelopeInvalid(f"{what}: the signature of node {node} does not verify")


def _fits(key: NodePublicKey, alg: object) -> bool:
    return (isinstance(key, ed25519.Ed25519PublicKey) and alg == "Ed25519") or (
        isinstance(key, ec.EllipticCurvePublicKey) and alg == "ES256"
    )


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
            "v": key.version,
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
        },
        kid=key.version >= 2,
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
    # a hop is written in its envelope's version: a version 1 envelope stays readable by
    # every node its entry node could send it to
    hops.append(key.sign(record, kid=document["envelope"].get("v") == 2))
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


def open_envelope(wire: bytes, data: bytes | None, keys: Mapping[str, PeerKey]) -> Envelope:
    """Check the entry node's signature, the bytes' digest and every hop, in order. With
    ``data`` None (a claim: the bytes came over HTTP), the transfer checked the digest the
    envelope names, and only the rest is checked here."""
    document = _load(wire)
    body = document["envelope"]
    if body.get("v") not in READS or isinstance(body.get("v"), bool):
        raise EnvelopeInvalid(
            f"envelope version {body.get('v')!r} is not understood (this node reads "
            f"{' and '.join(map(str, READS))})"
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
