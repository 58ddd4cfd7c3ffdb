"""Evidence bundles checked offline: an honest one verifies and says what happened to each
recipient; each kind of tampering is named; a chain rewritten consistently by its own
operator passes alone and is caught by the parent's checkpoints."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange.bundle import PackageCopy, ReceiptCheck, build_bundle, verify_bundle
from exchange.bundle_receipts import receipt_checker
from exchange.checkpoint import make_checkpoint, make_checkpoint_file
from exchange.devpki import make_crl
from exchange.envelope import NodePublicKey
from exchange.evidence import Event, LogEntry
from tests.evidence_log import (
    DATA,
    DOC,
    LOCAL,
    LOST,
    M1,
    M9,
    NODE,
    PARENT,
    REMOTE,
    S1,
    STATUS_DATA,
    T0,
    NodeIdentity,
    at,
    build_log,
    chain_of,
    document_events,
    node_identity,
    rewrite,
    sha,
)
from tests.pki import DevPki

EXPORTED = T0 + timedelta(days=1)


@pytest.fixture(scope="module")
def nodes(pki: DevPki) -> dict[str, NodeIdentity]:
    return {name: node_identity(pki.ca, name) for name in (NODE, PARENT)}


@pytest.fixture(scope="module")
def keys(nodes: dict[str, NodeIdentity]) -> dict[str, NodePublicKey]:
    return {name: node.issued.cert.public_key() for name, node in nodes.items()}  # type: ignore[misc]


@pytest.fixture(scope="module")
def log(nodes: dict[str, NodeIdentity]) -> tuple[list[LogEntry], list[dict[str, Any]]]:
    return build_log(nodes[NODE].key, nodes)  # with the deliveries' signed receipts


@pytest.fixture(scope="module")
def receipts(nodes: dict[str, NodeIdentity]) -> ReceiptCheck:
    return receipt_checker({name: node.issued.cert for name, node in nodes.items()})


PACKAGES = [PackageCopy(M1, sha(DATA), DATA), PackageCopy(S1, sha(STATUS_DATA), STATUS_DATA)]


def bundle(entries: list[LogEntry], **overrides: Any) -> bytes:
    args: dict[str, Any] = {
        "document_id": DOC,
        "node": NODE,
        "exported_at": EXPORTED,
        "entries": entries,
        "packages": PACKAGES,
    }
    args.update(overrides)
    return build_bundle(**args)


def edited(data: bytes, change: Any) -> bytes:
    body = json.loads(data)
    change(body)
    return json.dumps(body).encode()


def test_an_honest_bundle_verifies_and_says_what_each_recipient_saw(
    log: tuple[list[LogEntry], list[dict[str, Any]]],
    keys: dict[str, NodePublicKey],
    receipts: ReceiptCheck,
) -> None:
    entries, kept = log
    verdict = verify_bundle(bundle(entries), keys, kept, check_receipt=receipts)
    assert verdict.ok, verdict.problems
    assert verdict.problems == ()
    lines = "\n".join(verdict.summary)
    assert f"message {M1}: accepted at node {NODE} {at(1).isoformat()}" in lines
    assert (
        f"  {LOCAL}: delivered {at(2).isoformat()} at node {NODE}, with a signed receipt; "
        f"fetched {at(5).isoformat()}; "
        f"status 03 (Đã tiếp nhận) {at(7).isoformat()}"
    ) in verdict.summary
    assert (
        f"  {REMOTE}: delivered {at(3).isoformat()} at node {PARENT}, with a signed receipt"
        in verdict.summary
    )
    assert f"  {LOST}: failed {at(9).isoformat()}: expired" in verdict.summary
    assert "chain main: entries #1 to #11, 7 about the document" in verdict.summary
    assert any("checked up to #10 against 1 parent checkpoint(s)" in s for s in verdict.summary)
    assert "2 signed receipt(s) checked" in verdict.summary
    assert "with a signed receipt" in lines


def test_alone_it_verifies_but_says_no_parent_checkpoint_covers_it(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    verdict = verify_bundle(bundle(log[0]), keys)
    assert verdict.ok
    assert any("no parent checkpoint covers #10" in line for line in verdict.summary)


def test_an_edited_record_is_named(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    def to_rejected(body: dict[str, Any]) -> None:
        for entry in body["entries"]:
            if entry["event"]["kind"] == "status" and entry["event"]["message_id"] == S1:
                entry["event"]["detail"]["code"] = "04"

    verdict = verify_bundle(edited(bundle(log[0][1:]), to_rejected), keys)
    assert not verdict.ok
    assert verdict.problems == ("entry main#9: its record does not match its hash",)


def test_an_event_removed_from_the_middle_is_detected(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    entries = [e for e in log[0][1:] if e.event.kind != "fetched"]
    verdict = verify_bundle(bundle(entries), keys)
    assert verdict.problems == ("entry main#7: does not follow #5",)
    assert not any("fetched" in line for line in verdict.summary)


def test_swapped_package_bytes_are_detected(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    other = "<edXML>Công văn khác</edXML>".encode()
    # another package, with its own digest: the entries still name the original's
    swapped = [PackageCopy(M1, sha(other), other), PACKAGES[1]]
    problems = verify_bundle(bundle(log[0][1:], packages=swapped), keys).problems
    assert (
        f"entry main#3: records SHA-256 {sha(DATA)} for message {M1}, "
        f"but the bundle's package has {sha(other)}" in problems
    )

    # other bytes under the original digest
    def swap(body: dict[str, Any]) -> None:
        body["packages"][0]["bytes"] = base64.b64encode(other).decode()

    problems = verify_bundle(edited(bundle(log[0][1:]), swap), keys).problems
    assert f"package of message {M1}: its bytes do not match its SHA-256 {sha(DATA)}" in problems


def test_a_missing_or_loose_package_is_detected(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    loose = [*PACKAGES, PackageCopy(M9, sha(b"<x/>"), b"<x/>")]
    assert verify_bundle(bundle(log[0], packages=loose), keys).problems == (
        f"package of message {M9}: loose, no ACCEPTED or RECEIVED entry of the segment names it",
    )
    assert verify_bundle(bundle(log[0], packages=PACKAGES[:1]), keys).problems == (
        f"entry main#8: the package of message {S1} is missing",
    )


def test_a_segment_that_starts_after_the_arrival_is_detected(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    problems = verify_bundle(bundle(log[0][2:], packages=PACKAGES[1:]), keys).problems
    late = "but its arrival there is not in the segment"
    assert problems == (
        f"entry main#3: message {M1} was delivered at node {NODE}, {late}",
        f"entry main#6: message {M1} was fetched at node {NODE}, {late}",
    )


def rewritten(entries: list[LogEntry], nodes: dict[str, NodeIdentity]) -> list[LogEntry]:
    """The operator turns status 03 (#9) into 04 and makes the chain hold together again."""

    def to_rejected(record: dict[str, Any]) -> None:
        record["detail"]["code"] = "04"

    records = [e.record() for e in entries[8:]]
    again = rewrite(records, 9, to_rejected, nodes[NODE].key)
    return entries[:8] + [
        LogEntry("main", seq, Event.from_record(record), prev, digest)
        for seq, record, prev, digest in again
    ]


def test_a_rewritten_chain_passes_alone_and_fails_against_the_parents_checkpoints(
    log: tuple[list[LogEntry], list[dict[str, Any]]],
    keys: dict[str, NodePublicKey],
    nodes: dict[str, NodeIdentity],
) -> None:
    entries, kept = log
    forged = rewritten(entries, nodes)
    alone = verify_bundle(bundle(forged), keys)
    assert alone.ok, alone.problems
    assert any("status 04" in line for line in alone.summary)
    expected = (
        "entry main#10: its hash is not the one node province-h53 signed at "
        f"{at(10).isoformat(timespec='milliseconds')}: the chain was rewritten"
    )
    # and the node's key signed two heads for #10: the one its parent keeps, and the new one
    signed_at = at(10).isoformat(timespec="milliseconds")
    twice = f"node {NODE} signed two different heads of main#10 ({signed_at} and {signed_at})"
    assert verify_bundle(bundle(forged), keys, kept).problems == (twice, expected)
    # the parent's file, carried in the bundle, is the parent's word: it catches it too
    parent_file = json.loads(make_checkpoint_file(nodes[PARENT].key, NODE, kept, EXPORTED))
    assert verify_bundle(bundle(forged, parent_checkpoints=parent_file), keys).problems == (
        twice,
        expected,
    )


def test_a_parent_file_signed_by_the_child_is_refused(
    log: tuple[list[LogEntry], list[dict[str, Any]]],
    keys: dict[str, NodePublicKey],
    nodes: dict[str, NodeIdentity],
) -> None:
    forged = json.loads(make_checkpoint_file(nodes[NODE].key, NODE, log[1], EXPORTED))
    forged["keeper"] = PARENT
    problems = verify_bundle(bundle(log[0], parent_checkpoints=forged), keys).problems
    assert len(problems) == 1
    assert problems[0].startswith("the parent's checkpoint file in the bundle: ")


def test_entries_cut_from_the_end_are_detected_by_a_later_checkpoint(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    entries, kept = log
    problems = verify_bundle(bundle(entries[:7], packages=PACKAGES[:1]), keys, kept).problems
    assert problems == (
        f"chain main ends at #7 in a bundle exported {EXPORTED.isoformat()}, but node {NODE} had "
        f"signed its head #10 at {at(10).isoformat(timespec='seconds')}: "
        "entries were cut from its end",
    )


def test_a_checkpoint_with_a_bad_signature_is_refused(
    log: tuple[list[LogEntry], list[dict[str, Any]]],
    keys: dict[str, NodePublicKey],
    nodes: dict[str, NodeIdentity],
) -> None:
    entries, kept = log
    bad = {**kept[1], "sig": {**kept[1]["sig"], "value": kept[0]["sig"]["value"]}}
    problems = verify_bundle(bundle(entries), keys, [bad]).problems
    assert problems == (
        f"checkpoint refused: node {NODE}'s checkpoint of main#10: the signature of node {NODE} "
        "does not verify",
    )
    other = make_checkpoint(nodes[PARENT].key, "main", (10, entries[9].hash), at(10))
    assert verify_bundle(bundle(entries), keys, [other]).problems == (
        f"node {PARENT}'s checkpoint of main#10: not of node {NODE}, whose chain the bundle holds",
    )
    unknown = {k: v for k, v in keys.items() if k != NODE}
    assert verify_bundle(bundle(entries), unknown).problems == (
        f"checkpoint refused: node {NODE}'s checkpoint of main#3 is signed by node '{NODE}', "
        "which this node does not know",
        f"checkpoint refused: node {NODE}'s checkpoint of main#10 is signed by node '{NODE}', "
        "which this node does not know",
    )


def test_delivery_receipts_go_through_the_receipt_hook(keys: dict[str, NodePublicKey]) -> None:
    events = document_events()  # no checkpoints: the chain is built anew
    receipt = base64.b64encode(b"<r/>").decode()
    events[2] = dataclasses.replace(events[2], detail={**events[2].detail, "receipt": receipt})
    entries = chain_of(events)
    seen: list[tuple[bytes, str | None, str | None]] = []

    def check(data: bytes, event: Event, package_sha256: str | None) -> list[str]:
        seen.append((data, event.message_id, package_sha256))
        return ["does not verify"]

    unchecked = verify_bundle(bundle(entries), keys)
    assert unchecked.ok
    assert "1 signed receipt(s) present, not checked (no receipt reader)" in unchecked.summary
    checked = verify_bundle(bundle(entries), keys, check_receipt=check)
    assert seen == [(b"<r/>", M1, sha(DATA))]
    assert checked.problems == ("entry main#3: receipt: does not verify",)


def with_delivery_receipt(events: list[Event], index: int, data: bytes) -> list[LogEntry]:
    detail = {**events[index].detail, "receipt": base64.b64encode(data).decode()}
    events[index] = dataclasses.replace(events[index], detail=detail)
    return chain_of(events)


def test_a_receipt_that_does_not_hold_against_its_entry_is_refused(
    nodes: dict[str, NodeIdentity], keys: dict[str, NodePublicKey], receipts: ReceiptCheck
) -> None:
    events = document_events(nodes)
    mine = base64.b64decode(events[2].detail["receipt"])
    parents = base64.b64decode(events[3].detail["receipt"])
    # the parent's receipt (for another recipient) passed off as this node's delivery
    problems = verify_bundle(
        bundle(with_delivery_receipt(document_events(nodes), 2, parents)),
        keys,
        check_receipt=receipts,
    ).problems
    assert problems == (
        f"entry main#3: receipt: node {PARENT} signed it, not node {NODE}",
        f"entry main#3: receipt: it names recipients {REMOTE}, the entry {LOCAL}",
    )
    # a receipt changed after signing
    forged = mine.replace(LOCAL.encode(), LOST.encode())
    problems = verify_bundle(
        bundle(with_delivery_receipt(document_events(nodes), 2, forged)),
        keys,
        check_receipt=receipts,
    ).problems
    assert len(problems) == 1
    assert problems[0].startswith("entry main#3: receipt: ")
    # the package the bundle holds is not the one the receipt covers
    other = b"<edXML>other bytes</edXML>"
    events = [
        dataclasses.replace(e, digest=sha(other)) if e.message_id == M1 else e
        for e in document_events(nodes)
    ]
    packages = [PackageCopy(M1, sha(other), other), PACKAGES[1]]
    problems = verify_bundle(
        bundle(chain_of(events), packages=packages), keys, check_receipt=receipts
    ).problems
    assert (
        f"entry main#3: receipt: its PackageSha256 {sha(DATA)} is not the package's {sha(other)}"
        in problems
    )
    # a node whose certificate the verifier does not pin
    only_mine = receipt_checker({NODE: nodes[NODE].issued.cert})
    problems = verify_bundle(
        bundle(chain_of(document_events(nodes))), keys, check_receipt=only_mine
    ).problems
    assert problems == (
        f"entry main#4: receipt: node {PARENT} is unknown (no certificate): "
        "its receipt cannot be checked",
    )


def test_crls_are_checked_and_placed_against_the_admission(
    pki: DevPki, log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey]
) -> None:
    crl = make_crl(pki.ca, [], when=T0)
    verdict = verify_bundle(bundle(log[0], crls=[("ca.crl", crl)]), keys)
    assert verdict.ok
    line = next(s for s in verdict.summary if s.startswith("CRL ca.crl: of "))
    assert line.endswith("current when all 2 package(s) were accepted")
    stale = make_crl(pki.ca, [], when=T0 - timedelta(days=30))
    line = next(
        s
        for s in verify_bundle(bundle(log[0], crls=[("old.crl", stale)]), keys).summary
        if "old.crl" in s
    )
    assert line.endswith(f"not current when message(s) {M1}, {S1} were accepted")

    def tamper(body: dict[str, Any]) -> None:
        body["crls"][0]["sha256"] = "00" * 32

    problems = verify_bundle(edited(bundle(log[0], crls=[("ca.crl", crl)]), tamper), keys).problems
    assert problems == (f"CRL ca.crl: its bytes do not match its SHA-256 {'00' * 32}",)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x00not json", "not JSON"),
        (b'{"format": "lienthong-evidence/2"}', "not an evidence bundle"),
        (b'{"format": "lienthong-evidence/1", "entries": [{"seq": 1}]}', "entry 1 of the bundle"),
    ],
)
def test_what_is_not_a_bundle_is_refused_in_one_line(
    keys: dict[str, NodePublicKey], data: bytes, why: str
) -> None:
    verdict = verify_bundle(data, keys)
    assert not verdict.ok
    assert len(verdict.problems) == 1
    assert why in verdict.problems[0]


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


ODD_VALUES = [None, 0, 7, -1, "", "x", "00" * 32, True, 1.5, [], {}, ["a"], "2026-11-20T08:00:00"]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_changed_value_in_an_entry_is_refused_and_nothing_crashes(
    log: tuple[list[LogEntry], list[dict[str, Any]]], keys: dict[str, NodePublicKey], data: Any
) -> None:
    body = json.loads(bundle(log[0]))
    places = [p for p in _leaves(body) if p[0] in ("entries", "packages", "checkpoints", "crls")]
    path = data.draw(st.sampled_from(places))
    value = data.draw(st.sampled_from(ODD_VALUES))
    holder = body
    for step in path[:-1]:
        holder = holder[step]
    unchanged = holder[path[-1]] == value and type(holder[path[-1]]) is type(value)
    holder[path[-1]] = value
    verdict = verify_bundle(json.dumps(body).encode(), keys, log[1])
    if path[0] == "entries" and not unchanged:
        assert not verdict.ok, path


def test_a_checkpoint_file_the_node_kept_for_itself_does_not_count_as_its_parents(
    log: tuple[list[LogEntry], list[dict[str, Any]]],
    keys: dict[str, NodePublicKey],
    nodes: dict[str, NodeIdentity],
) -> None:
    """Signed honestly by the node, naming itself as keeper: a node cannot vouch for its
    own history, however well its own key signs."""
    own = json.loads(make_checkpoint_file(nodes[NODE].key, NODE, log[1], EXPORTED))
    problems = verify_bundle(bundle(log[0], parent_checkpoints=own), keys).problems
    assert problems == (
        f"the checkpoint file in the bundle was signed by node {NODE} itself, not by its parent",
    )
