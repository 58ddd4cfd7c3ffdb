"""The transport envelope: sealed by the entry node, extended by each hop, checked by all."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given
from hypothesis import strategies as st

from exchange.envelope import (
    NodeKey,
    NodePublicKey,
    append_hop,
    canonical,
    open_envelope,
    seal,
)
from exchange.errors import EnvelopeInvalid, HopLimitExceeded
from exchange.links import frame, unframe

DATA = "<edXML>Trích yếu</edXML>".encode()


@pytest.fixture(scope="module")
def nodes() -> dict[str, NodeKey]:
    return {
        "commune": NodeKey("commune", ec.generate_private_key(ec.SECP256R1())),
        "district": NodeKey("district", ed25519.Ed25519PrivateKey.generate()),
        "province": NodeKey("province", ec.generate_private_key(ec.SECP256R1())),
    }


@pytest.fixture(scope="module")
def keys(nodes: dict[str, NodeKey]) -> dict[str, NodePublicKey]:
    return {name: node.key.public_key() for name, node in nodes.items()}


def sealed(nodes: dict[str, NodeKey], **overrides: object) -> bytes:
    args: dict[str, object] = {
        "message_id": "m-1",
        "data": DATA,
        "kind": "edoc",
        "sender": "000.21.31.H53",
        "recipients": ["000.00.00.G22"],
        "document_id": "000.21.31.H53,2026/11/20,1/UBND",
        "level": "strict",
    }
    args.update(overrides)
    return seal(nodes["commune"], **args)  # type: ignore[arg-type]


def test_an_envelope_crosses_three_nodes_and_says_so(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    wire = append_hop(append_hop(sealed(nodes), nodes["district"]), nodes["province"])
    envelope = open_envelope(wire, DATA, keys)
    assert envelope.hops == ("commune", "district", "province")
    assert (envelope.origin, envelope.level, envelope.sender) == (
        "commune",
        "strict",
        "000.21.31.H53",
    )
    assert envelope.recipients == ("000.00.00.G22",)
    assert json.loads(wire)["envelope"]["v"] == 1


def test_the_recipients_a_hop_handed_to_an_upstream_are_signed_and_read_back(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    wire = append_hop(sealed(nodes), nodes["district"], bridged=["000.00.00.G09"])
    assert open_envelope(wire, DATA, keys).bridged == ("000.00.00.G09",)
    assert open_envelope(sealed(nodes), DATA, keys).bridged == ()
    document = json.loads(wire)
    document["hops"][1]["bridged"] = ["000.00.00.G22"]  # someone else claims it went upstream
    with pytest.raises(EnvelopeInvalid, match="does not verify"):
        open_envelope(canonical(document), DATA, keys)


def test_other_bytes_than_the_sealed_ones_are_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    with pytest.raises(EnvelopeInvalid, match="SHA-256"):
        open_envelope(sealed(nodes), DATA + b" ", keys)


def test_a_raised_verification_level_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    document = json.loads(sealed(nodes, level="legacy"))
    document["envelope"]["level"] = "strict"
    with pytest.raises(EnvelopeInvalid, match="does not verify"):
        open_envelope(canonical(document), DATA, keys)


def test_a_hop_cut_out_of_the_middle_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    wire = append_hop(append_hop(sealed(nodes), nodes["district"]), nodes["province"])
    document = json.loads(wire)
    del document["hops"][1]
    with pytest.raises(EnvelopeInvalid, match="does not follow"):
        open_envelope(canonical(document), DATA, keys)


def test_an_unknown_node_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    stranger = NodeKey("stranger", ec.generate_private_key(ec.SECP256R1()))
    wire = append_hop(sealed(nodes), stranger)
    with pytest.raises(EnvelopeInvalid, match="stranger"):
        open_envelope(wire, DATA, keys)


def test_a_node_cannot_sign_in_another_nodes_name(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    impostor = NodeKey("district", nodes["province"].key)  # province's key, district's name
    with pytest.raises(EnvelopeInvalid, match="does not"):
        open_envelope(append_hop(sealed(nodes), impostor), DATA, keys)


def test_the_hop_limit_stops_a_loop(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    wire = sealed(nodes, hop_limit=3)
    wire = append_hop(wire, nodes["district"])
    wire = append_hop(wire, nodes["province"])
    with pytest.raises(HopLimitExceeded, match="hop limit"):
        append_hop(wire, nodes["district"])
    assert open_envelope(wire, DATA, keys).hops == ("commune", "district", "province")


def test_garbage_is_refused_with_a_reason(keys: dict[str, NodePublicKey]) -> None:
    for wire in (b"", b"[]", b'{"envelope": 1}', b"\xff"):
        with pytest.raises(EnvelopeInvalid):
            open_envelope(wire, DATA, keys)


@given(envelope=st.binary(max_size=300), data=st.binary(max_size=300))
def test_a_link_message_carries_envelope_and_bytes_whole(envelope: bytes, data: bytes) -> None:
    assert unframe(frame(envelope, data)) == (envelope, data)


def test_a_ten_thousand_recipient_envelope_travels_in_the_body() -> None:
    """A header must fit in one AMQP frame (RabbitMQ: 128 KiB); the body has no such bound."""
    key = NodeKey("central", ec.generate_private_key(ec.SECP256R1()))
    recipients = [f"000.{i // 100:02d}.{i % 100:02d}.H53" for i in range(10_000)]
    data = b"<edXML/>"
    wire = seal(
        key,
        message_id="m",
        data=data,
        kind="edoc",
        sender="000.00.00.G22",
        recipients=recipients,
        document_id="d",
        level="strict",
    )
    assert len(wire) > 128 * 1024
    envelope, carried = unframe(frame(wire, data))
    assert (
        open_envelope(envelope, carried, {"central": key.key.public_key()}).recipients[-1]
        == recipients[-1]
    )


@pytest.mark.parametrize(
    "body",
    [b"", b"<edXML/>", b"LTL1 12\n{}", b"LTL1 x\n{}", b"LTL2 2\n{}", b"LTL1 -1\n{}"],
    ids=["empty", "bare package", "short", "not a length", "other format", "negative"],
)
def test_a_broken_link_frame_is_an_invalid_envelope(body: bytes) -> None:
    with pytest.raises(EnvelopeInvalid, match="link message"):
        unframe(body)


# Found by tests/unit/test_fuzz_envelope.py: the last hop's signature member is covered by
# no later record, so what rode in it, or a second spelling of its value, went unnoticed.


def _last_sig_changed(nodes: dict[str, NodeKey], change: dict[str, object]) -> bytes:
    document = json.loads(append_hop(sealed(nodes), nodes["district"]))
    document["hops"][-1]["sig"].update(change)
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def test_anything_riding_in_the_last_hops_signature_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    with pytest.raises(EnvelopeInvalid, match="alg, node and value"):
        open_envelope(_last_sig_changed(nodes, {"note": "not signed by anyone"}), DATA, keys)


def test_a_signature_spelled_in_non_canonical_base64_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    value = json.loads(append_hop(sealed(nodes), nodes["district"]))["hops"][-1]["sig"]["value"]
    assert value.endswith("==")  # Ed25519: 64 bytes, the last character carries 4 spare bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    same_bytes = value[:-3] + alphabet[alphabet.index(value[-3]) ^ 1] + "=="
    with pytest.raises(EnvelopeInvalid, match="canonical base64"):
        open_envelope(_last_sig_changed(nodes, {"value": same_bytes}), DATA, keys)


def test_a_lone_surrogate_in_a_signature_is_refused_with_our_error(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    document = json.loads(append_hop(sealed(nodes), nodes["district"]))
    document["envelope"]["sig"]["x"] = "\ud800"
    wire = json.dumps(document, sort_keys=True).encode()  # written as the escape \ud800
    with pytest.raises(EnvelopeInvalid):
        open_envelope(wire, DATA, keys)


def test_an_envelope_a_known_node_signed_without_its_fields_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    document = json.loads(sealed(nodes))
    body = {k: v for k, v in document["envelope"].items() if k not in ("sig", "size")}
    document["envelope"] = nodes["commune"].sign(body)
    document["hops"] = []
    wire = append_hop(canonical(document), nodes["commune"])
    with pytest.raises(EnvelopeInvalid, match="does not parse"):
        open_envelope(wire, None, keys)  # a claim: the bytes' size is not compared first
