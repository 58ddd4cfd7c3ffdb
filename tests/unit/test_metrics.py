"""Prometheus metrics: the counters and histograms move as real signed packages flow
through nodes on the in-memory broker; the gauges say what a /status snapshot says."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.metrics import NodeMetrics
from exchange.admission import Admission
from exchange.errors import EnvelopeInvalid
from exchange.links import up_queue
from exchange.node import Node, NodeSettings
from exchange.policy import PRESETS
from exchange.signing import sign
from exchange.transport import Message
from tests.conftest import example
from tests.pki import G22, H53, DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_node import fetch, one_node, submit

HERE = "province-h53"


@pytest.fixture
async def node(tmp_path: Path, admission: Admission) -> AsyncIterator[Node]:
    """One node, SQLite and the memory broker, observed by its NodeMetrics."""
    settings = NodeSettings(HERE, hosted=frozenset({G22, H53, COMMUNE}))
    async with one_node(tmp_path, admission, settings, observer=NodeMetrics(HERE)) as built:
        yield built


def metrics(node: Node) -> NodeMetrics:
    assert isinstance(node.observer, NodeMetrics)
    return node.observer


def value(node: Node, name: str, **labels: str) -> float:
    """A sample of a node's registry; 0 when the series does not exist (yet)."""
    found = metrics(node).registry.get_sample_value(name, {"node": node.settings.node_id, **labels})
    return found or 0.0


async def until(check: Callable[[], bool]) -> None:
    """Wait for what another task does; a deadline, not a guess."""
    async with asyncio.timeout(20):
        while not check():  # noqa: ASYNC110 - polls a counter another task moves
            await asyncio.sleep(0.02)


async def test_counters_and_histograms_move_as_a_document_is_admitted_delivered_and_fetched(
    node: Node, pki: DevPki
) -> None:
    answer = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    assert answer.outcome == "accepted"
    assert value(node, "lienthong_packages_admitted_total", source="amqp") == 1
    assert value(node, "lienthong_admission_seconds_count") == 1
    assert value(node, "lienthong_packages_routed_total", next_hop="mailbox") == 2
    assert value(node, "lienthong_packages_delivered_total") == 0  # the relay writes them

    assert await node.relay_once() == 2
    assert value(node, "lienthong_packages_delivered_total") == 2  # H53 and the commune
    assert value(node, "lienthong_delivery_seconds_count") == 2
    assert value(node, "lienthong_delivery_seconds_bucket", le="+Inf") == 2

    (package,) = await fetch(node, H53)
    assert value(node, "lienthong_packages_fetched_total") == 0  # read, not acknowledged
    assert package.message_id is not None
    assert await node.acknowledge(H53, [package.message_id]) == 1
    assert await node.acknowledge(H53, [package.message_id]) == 0  # once
    assert value(node, "lienthong_packages_fetched_total") == 1

    again = await submit(node, sign(example("document-new.edxml"), pki.key(G22)))
    assert again.outcome == "duplicate"  # neither admitted nor refused again
    assert value(node, "lienthong_packages_admitted_total", source="amqp") == 1
    assert value(node, "lienthong_admission_seconds_count") == 1


async def test_refusals_are_counted_by_their_code(node: Node, pki: DevPki) -> None:
    unsigned = await submit(node, example("document-new.edxml"))
    assert (unsigned.outcome, unsigned.code) == ("refused", "signature.missing")
    other = example("document-new.edxml").replace(b"125/UBND", b"126/UBND")
    assert (await submit(node, other)).code == "signature.missing"
    broken = await submit(node, b"<edXMLEnvelope")
    assert (broken.outcome, broken.code) == ("refused", "xml.malformed")
    signed = sign(example("document-new.edxml"), pki.key(G22))
    tampered = await submit(node, signed.replace(b"125/UBND", b"126/UBND"))
    assert tampered.outcome == "refused"
    assert tampered.code not in (None, "signature.missing", "xml.malformed")

    assert value(node, "lienthong_packages_refused_total", code="signature.missing") == 2
    assert value(node, "lienthong_packages_refused_total", code="xml.malformed") == 1
    assert value(node, "lienthong_packages_refused_total", code=str(tampered.code)) == 1
    assert value(node, "lienthong_admission_seconds_count") == 4
    assert value(node, "lienthong_packages_admitted_total", source="amqp") == 0
    assert value(node, "lienthong_packages_routed_total", next_hop="mailbox") == 0


async def test_a_held_package_is_admitted_and_routed_only_once_an_operator_releases_it(
    node: Node,
) -> None:
    node.settings = replace(node.settings, sources={"amqp": PRESETS["quarantine"]})
    with capture_logs() as logged:
        answer = await submit(node, example("document-new.edxml"))  # unsigned: held
    assert (answer.outcome, answer.level) == ("accepted", "quarantined")
    (line,) = [e for e in logged if e["event"] == "package"]
    assert (line["outcome"], line["message_id"]) == ("quarantined", answer.message_id)
    assert value(node, "lienthong_packages_admitted_total", source="amqp") == 1
    assert value(node, "lienthong_packages_routed_total", next_hop="mailbox") == 0

    assert answer.message_id is not None
    await node.decide_quarantined(answer.message_id, "released", by="ops")
    assert value(node, "lienthong_packages_routed_total", next_hop="mailbox") == 2
    assert await node.relay_once() == 2
    assert value(node, "lienthong_packages_delivered_total") == 2


@pytest.fixture
async def observed(tree: Tree) -> Tree:
    """The memory tree, each node observed by its own NodeMetrics."""
    for name, each in tree.nodes.items():
        each.observer = NodeMetrics(name)
    return tree


async def test_copies_are_counted_by_next_hop_across_the_tree(observed: Tree, pki: DevPki) -> None:
    """commune -> district -> province-h53 -> central: G14's mailbox there, and on to
    province-h41 for H41. Each node counts where it sent the package, and the two nodes
    that deliver count the copy and its time since the commune's node accepted it."""
    nodes = observed.nodes
    answer = await observed.submit("commune-21-31-h53", document(pki, COMMUNE, G14, H41))
    assert answer.outcome == "accepted"
    await observed.wait(G14)
    await observed.wait(H41)
    central, h41 = nodes["central"], nodes["province-h41"]
    await until(lambda: value(h41, "lienthong_packages_delivered_total") == 1)
    await until(lambda: value(central, "lienthong_packages_delivered_total") == 1)

    def routed(node: str, hop: str) -> float:
        return value(nodes[node], "lienthong_packages_routed_total", next_hop=hop)

    assert value(nodes["commune-21-31-h53"], "lienthong_packages_admitted_total", source="amqp")
    assert routed("commune-21-31-h53", "district-31-h53") == 1
    assert routed("district-31-h53", "province-h53") == 1
    assert routed("province-h53", "central") == 1
    assert routed("central", "mailbox") == routed("central", "province-h41") == 1
    assert routed("province-h41", "mailbox") == 1
    for name in ("district-31-h53", "province-h53", "central"):  # carried, not admitted
        assert value(nodes[name], "lienthong_admission_seconds_count") == 0
    for delivering in (central, h41):
        assert value(delivering, "lienthong_delivery_seconds_count") == 1
        assert 0 <= value(delivering, "lienthong_delivery_seconds_sum") < 20

    # a message on a link that is no package is dead-lettered and counted by its code
    await observed.transport.publish(
        up_queue("central", "normal"), Message(b"not a framed package"), timeout=5
    )
    await until(
        lambda: value(central, "lienthong_packages_refused_total", code=EnvelopeInvalid.code) == 1
    )


SNAPSHOT: dict[str, Any] = {
    "node": {"id": HERE, "level": "province", "version": "0.1.0", "uptime_s": 12.5},
    "drain": None,
    "health": {
        "store": {"ok": True, "ms": 1.2, "error": None},
        "broker": {"ok": False, "ms": 2.0, "error": "connection refused"},
    },
    "links": [
        {
            "neighbour": "central",
            "role": "parent",
            "state": "up",
            "since": None,
            "last_error": None,
            "backlog": {
                "out": {"urgent": 1, "normal": 4, "bulk": 0},
                "in": {"urgent": 0, "normal": 2, "bulk": 0},
            },
            "backlog_total": 7,
        },
        {
            "neighbour": "district-31-h53",
            "role": "child",
            "state": "down",
            "since": "2026-11-29T01:00:00+00:00",
            "last_error": "no consumer",
            "backlog": {
                "out": {"urgent": 0, "normal": 120, "bulk": 3},
                "in": {"urgent": 0, "normal": 0, "bulk": 0},
            },
            "backlog_total": 123,
        },
        {"neighbour": "district-32-h53", "role": "child", "state": "unknown", "backlog": {}},
    ],
    "upstreams": [
        {"name": "vdxp", "protocol": "vdxp", "state": "up", "backlog_total": 2},
        {"name": "bkav", "protocol": "bkav", "state": "down", "backlog_total": 9},
    ],
    "queues": [
        {"name": "lienthong.province-h53.inbound", "messages": 5, "consumers": 1},
        {"name": "lienthong.province-h53.requests", "messages": 0, "consumers": 1},
    ],
    "mailboxes": {"pending_total": 3, "top": []},
    "dead_letters": {"count": 1, "items": []},
    "quarantine": {"count": 0, "items": []},
    "failed": {"count": 4, "items": []},
    "receipts_last_hour": {"accepted": 5},
    "overdue": {"count": 2, "items": []},
    "certificates": [
        {"subject": "node province-h53", "kind": "node", "days_left": 364, "warn": False},
        {"subject": "000.00.00.H53", "kind": "agency", "days_left": 12, "warn": True},
    ],
    "directory": {"version": 3, "issued_at": None, "age_s": 120.0},
    "clock": {"offset_s": -0.4, "ok": True, "basis": "parent"},
    "series": {"step_s": 60, "points": []},
    "alerts": [],
}


def gauge(metrics: NodeMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"node": HERE, **labels})


def test_gauges_are_set_from_a_status_snapshot() -> None:
    metrics = NodeMetrics(HERE)
    metrics.update_from_status(SNAPSHOT)
    expected = {
        ("lienthong_link_up", ("central", "parent")): 1,
        ("lienthong_link_up", ("district-31-h53", "child")): 0,
        ("lienthong_link_backlog", ("central", "out")): 5,
        ("lienthong_link_backlog", ("central", "in")): 2,
        ("lienthong_link_backlog", ("district-31-h53", "out")): 123,
        ("lienthong_upstream_up", ("vdxp",)): 1,
        ("lienthong_upstream_up", ("bkav",)): 0,
        ("lienthong_upstream_backlog", ("bkav",)): 9,
        ("lienthong_queue_depth", ("lienthong.province-h53.inbound",)): 5,
        ("lienthong_queue_depth", ("lienthong.province-h53.requests",)): 0,
        ("lienthong_dead_letters", ()): 1,
        ("lienthong_quarantined", ()): 0,
        ("lienthong_overdue_acknowledgements", ()): 2,
        ("lienthong_mailbox_pending", ()): 3,
        ("lienthong_certificate_days_left", ("000.00.00.H53", "agency")): 12,
        ("lienthong_certificate_days_left", ("node province-h53", "node")): 364,
        ("lienthong_clock_offset_seconds", ()): -0.4,
        ("lienthong_directory_age_seconds", ()): 120.0,
        ("lienthong_draining", ()): 0,
        ("lienthong_store_up", ()): 1,
        ("lienthong_broker_up", ()): 0,
    }
    names = {
        "lienthong_link_up": ("neighbour", "role"),
        "lienthong_link_backlog": ("neighbour", "direction"),
        "lienthong_upstream_up": ("upstream",),
        "lienthong_upstream_backlog": ("upstream",),
        "lienthong_queue_depth": ("queue",),
        "lienthong_certificate_days_left": ("subject", "kind"),
    }
    for (name, values), want in expected.items():
        labels = dict(zip(names.get(name, ()), values, strict=True))
        assert gauge(metrics, name, **labels) == want, (name, labels)
    # a link whose state is unknown is not said to be down; its empty backlog says nothing
    assert gauge(metrics, "lienthong_link_up", neighbour="district-32-h53", role="child") is None
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b'lienthong_link_up{neighbour="central",node="province-h53",role="parent"} 1.0' in body
    assert b"district-32-h53" not in body


def test_gauges_of_what_a_snapshot_no_longer_lists_are_removed() -> None:
    metrics = NodeMetrics(HERE)
    metrics.update_from_status(SNAPSHOT)
    later = copy.deepcopy(SNAPSHOT)
    later["links"] = later["links"][:1]  # the district's link is gone from the directory
    later["certificates"] = later["certificates"][:1]
    later["drain"] = {"since": "2026-11-29T02:00:00+00:00", "by": "ops", "in_flight": 3}
    later["clock"]["offset_s"] = None  # no basis to judge the clock now
    metrics.update_from_status(later)

    assert gauge(metrics, "lienthong_link_up", neighbour="central", role="parent") == 1
    assert gauge(metrics, "lienthong_link_up", neighbour="district-31-h53", role="child") is None
    assert (
        gauge(metrics, "lienthong_link_backlog", neighbour="district-31-h53", direction="out")
        is None
    )
    assert (
        gauge(metrics, "lienthong_certificate_days_left", subject="000.00.00.H53", kind="agency")
        is None
    )
    assert gauge(metrics, "lienthong_certificate_days_left", subject=f"node {HERE}", kind="node")
    assert gauge(metrics, "lienthong_clock_offset_seconds") is None
    assert gauge(metrics, "lienthong_draining") == 1
    body, _ = metrics.render()
    assert b"district-31-h53" not in body
    assert b"000.00.00.H53" not in body


def test_two_nodes_in_one_process_keep_their_own_series() -> None:
    one, two = NodeMetrics("central"), NodeMetrics(HERE)
    one.admitted("amqp", 0.01)
    one.routed("province-h53", 3)
    assert one.registry.get_sample_value(
        "lienthong_packages_admitted_total", {"node": "central", "source": "amqp"}
    )
    assert b"lienthong_packages_admitted_total{" not in two.render()[0]
    assert b'next_hop="province-h53",node="central"} 3.0' in one.render()[0]
    for each in (one, two):  # the series that need no label but node exist from the start
        assert (
            each.registry.get_sample_value(
                "lienthong_packages_delivered_total", {"node": each.node_id}
            )
            == 0
        )
