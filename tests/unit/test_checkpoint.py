"""Checkpoints: a node's signed chain head, refused unless the node it names signed it, and
held against the entries they cover."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from exchange.checkpoint import (
    checkpoint_event,
    checkpoints_match,
    make_checkpoint,
    make_checkpoint_file,
    open_checkpoint,
    open_checkpoint_file,
)
from exchange.envelope import NodeKey, NodePublicKey
from exchange.errors import CheckpointInvalid
from exchange.evidence import Event, EventKind, LogEntry, chain_next

T0 = datetime(2027, 2, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def nodes() -> dict[str, NodeKey]:
    return {
        "province-h53": NodeKey("province-h53", ec.generate_private_key(ec.SECP256R1())),
        "central": NodeKey("central", ed25519.Ed25519PrivateKey.generate()),
    }


@pytest.fixture(scope="module")
def keys(nodes: dict[str, NodeKey]) -> dict[str, NodePublicKey]:
    return {name: node.key.public_key() for name, node in nodes.items()}


def chain(length: int) -> list[LogEntry]:
    entries: list[LogEntry] = []
    for n in range(length):
        event = Event(EventKind.STATUS, f"s|{n}", T0 + timedelta(minutes=n), "province-h53")
        head = (entries[-1].seq, entries[-1].hash) if entries else None
        entries.append(chain_next("main", head, event))
    return entries


def test_a_checkpoint_opens_with_the_key_of_the_node_it_names(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    for node in nodes.values():
        record = make_checkpoint(node, "main", (7, "ab" * 32), T0)
        assert set(record) == {"v", "node", "chain", "seq", "hash", "at", "sig"}
        checkpoint = open_checkpoint(json.loads(json.dumps(record)), keys)
        assert (checkpoint.node, checkpoint.chain, checkpoint.seq, checkpoint.hash) == (
            node.node_id,
            "main",
            7,
            "ab" * 32,
        )
        assert checkpoint.at == T0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"hash": "cd" * 32}, "does not verify"),
        ({"seq": 8}, "does not verify"),
        ({"node": "central"}, "does not verify"),
        ({"v": 2}, "version"),
        ({"seq": "7"}, "whole number"),
        ({"at": "yesterday"}, "bad time"),
    ],
)
def test_a_checkpoint_changed_after_signing_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey], change: dict[str, object], why: str
) -> None:
    record = make_checkpoint(nodes["province-h53"], "main", (7, "ab" * 32), T0)
    with pytest.raises(CheckpointInvalid, match=why):
        open_checkpoint({**record, **change}, keys)


def test_a_checkpoint_signed_by_another_node_than_it_names_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    record = make_checkpoint(nodes["central"], "main", (7, "ab" * 32), T0)
    unsigned = {k: v for k, v in record.items() if k != "sig"}
    impostor = nodes["province-h53"].sign(unsigned)  # the child signs the parent's head
    with pytest.raises(
        CheckpointInvalid, match="central's checkpoint of main#7 is signed by node province-h53"
    ):
        open_checkpoint(impostor, keys)


def test_a_checkpoint_of_an_unknown_node_or_unsigned_is_refused(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    record = make_checkpoint(nodes["province-h53"], "main", (7, "ab" * 32), T0)
    with pytest.raises(CheckpointInvalid, match="does not know"):
        open_checkpoint(record, {"central": keys["central"]})
    with pytest.raises(CheckpointInvalid, match="not signed"):
        open_checkpoint({k: v for k, v in record.items() if k != "sig"}, keys)
    assert CheckpointInvalid.code == "checkpoint.invalid"


def test_the_checkpoint_event_is_the_nodes_reported_to_its_parent(
    nodes: dict[str, NodeKey],
) -> None:
    record = make_checkpoint(nodes["province-h53"], "main", (7, "ab" * 32), T0)
    event = checkpoint_event(record, T0 + timedelta(seconds=1), "central")
    assert event.kind is EventKind.CHECKPOINT
    assert event.key == "checkpoint|province-h53|main|7"
    assert (event.node, event.report_to) == ("province-h53", "central")
    assert event.detail == {"checkpoint": record}
    assert Event.from_record(json.loads(json.dumps(event.record()))).detail == {
        "checkpoint": record
    }


def test_entries_that_agree_with_the_checkpoints_raise_nothing(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    entries = chain(5)
    signed = [
        open_checkpoint(make_checkpoint(nodes["province-h53"], "main", (e.seq, e.hash), T0), keys)
        for e in entries[1::2]
    ]
    assert checkpoints_match(entries, signed) == []


def test_a_rewritten_entry_differs_from_the_checkpoint_of_its_seq(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    entries = chain(5)
    signed = open_checkpoint(
        make_checkpoint(nodes["province-h53"], "main", (4, entries[3].hash), T0), keys
    )
    other = Event(EventKind.STATUS, "s|other", T0, "province-h53")
    rewritten = [*entries[:3], chain_next("main", (3, entries[2].hash), other)]
    assert checkpoints_match(rewritten, [signed]) == [
        "entry main#4: its hash is not the one node province-h53 signed at "
        "2027-02-03T09:00:00.000+00:00: the chain was rewritten"
    ]


def test_two_heads_signed_for_one_seq_are_named(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    node = nodes["province-h53"]
    first = open_checkpoint(make_checkpoint(node, "main", (4, "ab" * 32), T0), keys)
    later = T0 + timedelta(hours=1)
    second = open_checkpoint(make_checkpoint(node, "main", (4, "cd" * 32), later), keys)
    problems = checkpoints_match([], [first, second])
    assert problems == [
        "node province-h53 signed two different heads of main#4 "
        "(2027-02-03T09:00:00.000+00:00 and 2027-02-03T10:00:00.000+00:00)"
    ]


def test_a_checkpoint_file_is_the_keepers_word(
    nodes: dict[str, NodeKey], keys: dict[str, NodePublicKey]
) -> None:
    records = [make_checkpoint(nodes["province-h53"], "main", (n, "ab" * 32), T0) for n in (3, 9)]
    data = make_checkpoint_file(nodes["central"], "province-h53", records, T0)
    assert open_checkpoint_file(data, keys) == ("central", "province-h53", records)
    # the child's operator cannot pass off a file of their own as the parent's
    forged = json.loads(make_checkpoint_file(nodes["province-h53"], "province-h53", records, T0))
    forged["keeper"] = "central"
    with pytest.raises(CheckpointInvalid):
        open_checkpoint_file(json.dumps(forged).encode(), keys)
    edited = json.loads(data)
    edited["checkpoints"] = edited["checkpoints"][:1]
    with pytest.raises(CheckpointInvalid, match="does not verify"):
        open_checkpoint_file(json.dumps(edited).encode(), keys)
    with pytest.raises(CheckpointInvalid, match="not a checkpoint file"):
        open_checkpoint_file(b'{"format": "other"}', keys)
    with pytest.raises(CheckpointInvalid, match="not JSON"):
        open_checkpoint_file(b"\xff", keys)
