"""Rotating a node's key, and the envelope versions 1 and 2 (docs/wire.md, "Versions").

A node that rotated its key is pinned by its peers with both certificates, old and new:
what it signed before still verifies, and what it signs now verifies too. Version 2
signatures name their certificate (``kid``); version 1 signatures do not, and are tried
against each pinned key, so a node of this release reads its older neighbours' packages.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from exchange.devpki import Issued, issue
from exchange.envelope import KeyRing, NodeKey, append_hop, open_envelope, seal
from exchange.errors import EnvelopeInvalid, ReceiptInvalid
from exchange.model import Level
from exchange.receipt import (
    DeliveryReceipt,
    ReceiptRecipient,
    issue_receipt,
    package_sha256,
    read_receipt,
)
from exchange.trust import fingerprint
from tests.pki import DevPki

DATA = b"<edXML>a letter</edXML>"


def _node(pki: DevPki, name: str) -> Issued:
    return issue(
        pki.ca,
        name,
        role="node",
        key_type="ec",
        not_before=datetime(2025, 1, 1, tzinfo=UTC),
        days=3650,
    )


def _key(issued: Issued, name: str, version: int = 1) -> NodeKey:
    return NodeKey(name, issued.key, kid=fingerprint(issued.cert), version=version)  # type: ignore[arg-type]


def _ring(*certs: Issued) -> KeyRing:
    return KeyRing(tuple((fingerprint(c.cert), c.cert.public_key()) for c in certs))  # type: ignore[misc]


def _sealed(key: NodeKey) -> bytes:
    return seal(
        key,
        message_id="m-1",
        data=DATA,
        kind="edoc",
        sender="000.00.00.G22",
        recipients=["000.00.00.H53"],
        document_id="1/UBND",
        level="strict",
    )


@pytest.fixture(scope="module")
def certs(pki: DevPki) -> dict[str, Issued]:
    return {
        "old": _node(pki, "commune"),
        "new": _node(pki, "commune"),
        "district": _node(pki, "district"),
    }


def test_version_1_is_written_by_default_without_a_kid(certs: dict[str, Issued]) -> None:
    wire = _sealed(_key(certs["old"], "commune"))
    document = json.loads(wire)
    assert document["envelope"]["v"] == 1
    assert set(document["envelope"]["sig"]) == {"alg", "node", "value"}
    assert set(document["hops"][0]["sig"]) == {"alg", "node", "value"}


def test_version_2_names_the_certificate_in_every_signature(certs: dict[str, Issued]) -> None:
    commune, district = _key(certs["old"], "commune", 2), _key(certs["district"], "district", 2)
    wire = append_hop(_sealed(commune), district)
    document = json.loads(wire)
    assert document["envelope"]["v"] == 2
    assert document["envelope"]["sig"]["kid"] == fingerprint(certs["old"].cert)
    assert document["hops"][1]["sig"]["kid"] == fingerprint(certs["district"].cert)
    keys = {"commune": _ring(certs["old"]), "district": _ring(certs["district"])}
    assert open_envelope(wire, DATA, keys).hops == ("commune", "district")


def test_a_hop_is_written_in_its_envelopes_version(certs: dict[str, Issued]) -> None:
    """A node that writes version 2 still extends a version 1 envelope in version 1: an
    older node further on reads it."""
    wire = append_hop(
        _sealed(_key(certs["old"], "commune")), _key(certs["district"], "district", 2)
    )
    assert set(json.loads(wire)["hops"][1]["sig"]) == {"alg", "node", "value"}


@pytest.mark.parametrize("version", [1, 2])
def test_packages_signed_before_and_after_a_rotation_both_verify(
    certs: dict[str, Issued], version: int
) -> None:
    before = _sealed(_key(certs["old"], "commune", version))
    after = _sealed(_key(certs["new"], "commune", version))
    both = {"commune": _ring(certs["old"], certs["new"])}
    assert open_envelope(before, DATA, both).origin == "commune"
    assert open_envelope(after, DATA, both).origin == "commune"
    with pytest.raises(EnvelopeInvalid, match=r"does not verify|has not pinned"):
        open_envelope(after, DATA, {"commune": _ring(certs["old"])})  # new cert not installed


def test_a_kid_that_is_not_pinned_is_named_in_the_refusal(certs: dict[str, Issued]) -> None:
    after = _sealed(_key(certs["new"], "commune", 2))
    with pytest.raises(EnvelopeInvalid, match="has not pinned"):
        open_envelope(after, DATA, {"commune": _ring(certs["old"])})


def test_a_kid_cannot_point_a_signature_at_another_key(certs: dict[str, Issued]) -> None:
    """The kid only chooses among the keys pinned for that node; a signature by the old key
    that claims the new one's kid does not verify."""
    lying = replace(_key(certs["old"], "commune", 2), kid=fingerprint(certs["new"].cert))
    with pytest.raises(EnvelopeInvalid, match="does not verify"):
        open_envelope(_sealed(lying), DATA, {"commune": _ring(certs["old"], certs["new"])})


def test_an_envelope_version_past_the_next_is_refused(certs: dict[str, Issued]) -> None:
    wire = _sealed(_key(certs["old"], "commune", 2)).replace(b'"v":2', b'"v":3')
    with pytest.raises(EnvelopeInvalid, match=r"version 3 is not understood .*reads 1 and 2"):
        open_envelope(wire, DATA, {"commune": _ring(certs["old"])})


def _receipt() -> DeliveryReceipt:
    at = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    return DeliveryReceipt(
        message_id="0b8e7c8e-5d0b-4c43-9a55-3f1e7a2b9c10",
        document_id="1/UBND",
        sender="000.00.00.G22",
        node="commune",
        level=Level.STRICT,
        package_sha256=package_sha256(DATA),
        issued_at=at + timedelta(seconds=1),
        recipients=(ReceiptRecipient("000.00.00.H53", at),),
    )


def test_receipts_signed_before_a_rotation_still_verify_after_it(
    certs: dict[str, Issued],
) -> None:
    before = issue_receipt(_receipt(), certs["old"].key, certs["old"].cert)
    after = issue_receipt(_receipt(), certs["new"].key, certs["new"].cert)
    both = {"commune": (certs["old"].cert, certs["new"].cert)}
    assert read_receipt(before, both).signer_fingerprint == fingerprint(certs["old"].cert)
    assert read_receipt(after, both).signer_fingerprint == fingerprint(certs["new"].cert)
    with pytest.raises(ReceiptInvalid):  # the old certificate dropped: old receipts fail
        read_receipt(before, {"commune": certs["new"].cert})
