"""Fuzzing the transport envelope (exchange/envelope.py): a forged hop is always found.

An envelope sealed by an entry node and extended by two more nodes (ECDSA and Ed25519
keys, a hop that handed recipients to an upstream axis) is changed in one way an attacker
on a link could: a field of the entry record or of a hop record (sender, recipients,
digest, time, level, bridged list, an added or removed field), the signature member,
the order of the hops, a hop removed or duplicated, a record signed again with another
node's key, or a byte of the wire. Every such change is refused with EnvelopeInvalid.

Cutting the LAST hop is not in the list: what is left is the envelope exactly as the node
before sent it (the signatures cannot tell); a node takes a link message only from its
parent or a child, so such a replay must also come from a neighbour's own trail.

And whatever bytes arrive, opening an envelope raises nothing but the node's own errors.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import event, given
from hypothesis import strategies as st

from exchange.envelope import (
    NodeKey,
    NodePublicKey,
    append_hop,
    canonical,
    open_envelope,
    seal,
)
from exchange.errors import EnvelopeInvalid, LienthongError
from tests.fuzzing import fuzz, tried

DATA = "<edXML>Trích yếu</edXML>".encode()
NODES = {
    "commune": NodeKey("commune", ec.generate_private_key(ec.SECP256R1())),
    "district": NodeKey("district", ed25519.Ed25519PrivateKey.generate()),
    "province": NodeKey("province", ec.generate_private_key(ec.SECP256R1())),
    "central": NodeKey("central", ed25519.Ed25519PrivateKey.generate()),
}
KEYS: dict[str, NodePublicKey] = {name: n.key.public_key() for name, n in NODES.items()}


def _trail() -> bytes:
    wire = seal(
        NODES["commune"],
        message_id="m-1",
        data=DATA,
        kind="edoc",
        sender="000.21.31.H53",
        recipients=["000.00.00.G22", "000.00.00.H41", "000.00.00.G09"],
        document_id="000.21.31.H53,2026/11/20,1/UBND",
        level="strict",
        business={"type": 2, "about": "000.21.31.H53,2026/11/19,9/UBND", "removed": ["A"]},
    )
    wire = append_hop(wire, NODES["district"], bridged=["000.00.00.G09"])
    return append_hop(wire, NODES["province"])


WIRE = _trail()
DOCUMENT: dict[str, Any] = json.loads(WIRE)
OPENED = open_envelope(WIRE, DATA, KEYS)

# JSON values to put in place of a field: near misses of the real ones and strays
VALUES = st.one_of(
    st.sampled_from(
        [
            None,
            True,
            0,
            1,
            -1,
            2**63,
            "",
            "commune",
            "district",
            "province",
            "central",
            "legacy",
            "strict",
            "000.00.00.G22",
            "000.00.00.G09",
            [],
            ["000.00.00.G22"],
            ["000.00.00.G09", "000.00.00.H41"],
            {},
            "2026-11-20T02:00:00.000+00:00",
            "\ud800",
        ]
    ),
    st.text(max_size=12),
    st.integers(),
    st.lists(st.text(max_size=6), max_size=3),
)


def refused(document: Any) -> EnvelopeInvalid:
    """The refusal of a changed document; fails the test if it was opened."""
    try:
        wire = canonical(document)
    except ValueError:  # a lone surrogate: send the bytes as json.dumps would escape them
        wire = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(EnvelopeInvalid) as caught:
        open_envelope(wire, DATA, KEYS)
    event(f"refused: {caught.value.message[:40]}")
    return caught.value


def records(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry record, then each hop record."""
    return [document["envelope"], *document["hops"]]


# --- forgery --------------------------------------------------------------------------


@fuzz(250)
@given(data=st.data())
def test_fuzz_a_changed_field_of_any_signed_record_is_refused(data: st.DataObject) -> None:
    tried("envelope: a changed field is refused")
    document = copy.deepcopy(DOCUMENT)
    record = data.draw(st.sampled_from(records(document)))
    field = data.draw(st.sampled_from([*sorted(k for k in record if k != "sig"), "extra"]))
    if field != "extra" and data.draw(st.integers(min_value=0, max_value=4)) == 0:
        del record[field]
    else:
        value = data.draw(VALUES.filter(lambda v: v != record.get(field)))
        record[field] = value
    refused(document)


@fuzz(150)
@given(data=st.data())
def test_fuzz_a_changed_signature_member_is_refused(data: st.DataObject) -> None:
    tried("envelope: a changed signature is refused")
    document = copy.deepcopy(DOCUMENT)
    sig = data.draw(st.sampled_from(records(document)))["sig"]
    what = data.draw(st.sampled_from(("alg", "node", "value", "value", "extra", "drop")))
    if what == "value":  # change one character of the base64 (or its padding)
        text = sig["value"]
        at = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
        char = data.draw(
            st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
        )
        if char == text[at]:
            return
        sig["value"] = text[:at] + char + text[at + 1 :]
    elif what == "drop":
        del sig[data.draw(st.sampled_from(sorted(sig)))]
    else:
        value = data.draw(VALUES.filter(lambda v: v != sig.get(what)))
        sig[what] = value
    refused(document)


@fuzz(150)
@given(data=st.data())
def test_fuzz_hops_reordered_cut_or_duplicated_are_refused(data: st.DataObject) -> None:
    tried("envelope: hops reordered, cut or duplicated are refused")
    document = copy.deepcopy(DOCUMENT)
    hops = document["hops"]
    what = data.draw(st.sampled_from(("swap", "cut", "duplicate", "shuffle")))
    if what == "swap":
        i, j = data.draw(st.lists(st.integers(0, len(hops) - 1), min_size=2, max_size=2))
        if i == j:
            return
        hops[i], hops[j] = hops[j], hops[i]
    elif what == "cut":  # any hop but the last (see the module's docstring)
        del hops[data.draw(st.integers(0, len(hops) - 2))]
    elif what == "duplicate":
        i = data.draw(st.integers(0, len(hops) - 1))
        hops.insert(data.draw(st.integers(0, len(hops))), copy.deepcopy(hops[i]))
    else:
        order = data.draw(st.permutations(range(len(hops))))
        if list(order) == list(range(len(hops))):
            return
        document["hops"] = [hops[i] for i in order]
    refused(document)


@fuzz(120)
@given(data=st.data())
def test_fuzz_a_record_signed_with_another_nodes_key_is_refused(data: st.DataObject) -> None:
    tried("envelope: another node's key is refused")
    document = copy.deepcopy(DOCUMENT)
    index = data.draw(st.integers(0, len(document["hops"])))
    record = records(document)[index]
    owner = record["sig"]["node"]
    forger = data.draw(st.sampled_from(sorted(n for n in NODES if n != owner)))
    unsigned = {k: v for k, v in record.items() if k != "sig"}
    if data.draw(st.booleans()):
        # the forger's key under the owner's name; perhaps after changing a field
        if data.draw(st.booleans()):
            field = data.draw(st.sampled_from(sorted(unsigned)))
            unsigned[field] = data.draw(
                VALUES.filter(lambda v: v != unsigned[field] and v != "\ud800")  # signable
            )
        signed = NodeKey(owner, NODES[forger].key).sign(unsigned)
    else:  # signed in the forger's own name, the record still naming the owner
        signed = NODES[forger].sign(unsigned)
    if index == 0:
        document["envelope"] = signed
    else:
        document["hops"][index - 1] = signed
    refused(document)


@fuzz(250)
@given(data=st.data())
def test_fuzz_a_changed_byte_of_the_wire_is_refused_or_reads_the_same(
    data: st.DataObject,
) -> None:
    tried("envelope: a changed byte is refused")
    wire = bytearray(WIRE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(wire) - 1))
        what = data.draw(st.sampled_from(("flip", "delete", "insert")))
        if what == "flip":
            wire[at] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif what == "delete":
            del wire[at]
        else:
            wire[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        opened = open_envelope(bytes(wire), DATA, KEYS)
    except EnvelopeInvalid:
        event("refused")
        return
    # only a change JSON does not see (whitespace between tokens) may pass
    assert json.loads(wire) == DOCUMENT, "a changed envelope was opened"
    assert opened == OPENED
    event("the same document")


# --- nothing raises but ours ----------------------------------------------------------

JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), VALUES),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_wires(draw: st.DrawFn) -> bytes:
    """Random bytes, random JSON, or the real envelope with random JSON spliced in."""
    choice = draw(st.integers(min_value=0, max_value=3))
    if choice == 0:
        return draw(st.binary(max_size=200))
    if choice == 1:
        return json.dumps(draw(JSON)).encode()
    document = copy.deepcopy(DOCUMENT)
    target = draw(st.sampled_from([document, *records(document)]))
    target[draw(st.sampled_from([*sorted(target), "sig", "x"]))] = draw(JSON)
    if choice == 3:  # signed again by a node this one knows: a buggy or hostile neighbour
        hops = document["hops"] if isinstance(document.get("hops"), list) else []
        for i, record in enumerate([document.get("envelope"), *hops]):
            if isinstance(record, dict) and isinstance(record.get("sig"), dict):
                node = str(record["sig"].get("node"))
                if node in NODES:
                    unsigned = {k: v for k, v in record.items() if k != "sig"}
                    try:
                        signed = NODES[node].sign(unsigned)
                        canonical(signed)
                    except (TypeError, ValueError):
                        continue
                    if i == 0:
                        document["envelope"] = signed
                    else:
                        document["hops"][i - 1] = signed
    return json.dumps(document, sort_keys=True).encode()


@fuzz(300)
@given(wire=hostile_wires(), with_data=st.booleans())
def test_fuzz_opening_any_envelope_raises_only_our_errors(wire: bytes, with_data: bool) -> None:
    tried("envelope: opening raises only our errors")
    refusal: LienthongError | None = None
    try:
        open_envelope(wire, DATA if with_data else None, KEYS)
    except LienthongError as exc:  # anything else fails the test
        refusal = exc
    assert refusal is None or refusal.code.startswith("envelope."), refusal
    event(f"refused: {refusal.code}" if refusal else "opened")
