"""The operator's endpoints over the memory tree: what an operator sees on /status, what
each action does, who may do it, and the trail each action leaves in the evidence log."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives.asymmetric import ec

from adapters import cli_ops
from adapters.agency_gate import AgencyGate
from adapters.http_api import build_app
from adapters.metrics import NodeMetrics
from adapters.ops_http import CACHE, add_ops_routes
from adapters.ops_status import OpsView
from adapters.store_sqlite import SqliteStore
from adapters.transport_memory import MemoryTransport
from exchange.admission import Admitted
from exchange.alerting import Thresholds
from exchange.config import Credential
from exchange.config_http import HttpClient, HttpOperator, HttpSettings, http_settings
from exchange.envelope import NodeKey
from exchange.errors import ConfigurationError, PermanentFault
from exchange.evidence import Event, EventKind
from exchange.links import down_queue
from exchange.node import Node, NodeSettings
from exchange.policy import PRESETS, VerificationPolicy
from exchange.topology import Topology
from exchange.transport import Message
from tests.conftest import example
from tests.ops_stand_in import realistic_status
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document
from tests.unit.test_tracking import wait_for

TOKENS = {"commune": "t-commune-0001", "ops": "t-ops-0002", "viewer": "t-viewer-0003"}
CENTRAL, COMMUNE_NODE = "central", "commune-21-31-h53"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SETTINGS = HttpSettings(
    "127.0.0.1",
    0,
    clients={
        "commune": HttpClient(
            "commune", Credential(organs=frozenset({COMMUNE})), token_sha256=sha(TOKENS["commune"])
        ),
    },
    operators={
        "ops": HttpOperator("ops", sha(TOKENS["ops"])),
        "viewer": HttpOperator("viewer", sha(TOKENS["viewer"]), role="viewer"),
    },
)


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


@dataclass
class Face:
    node: Node
    view: OpsView
    http: TestClient

    async def status(self) -> dict[str, Any]:
        answer = await self.http.get("/status", headers=bearer("viewer"))
        assert answer.status == 200, await answer.text()
        body: dict[str, Any] = await answer.json()
        return body

    async def act(self, path: str, who: str = "ops", **body: object) -> tuple[int, Any]:
        answer = await self.http.post(path, json=body, headers=bearer(who))
        return answer.status, await answer.json()


@pytest.fixture
async def faces(tree: Tree) -> AsyncIterator[dict[str, Face]]:
    made = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in (CENTRAL, COMMUNE_NODE):
            node = tree.nodes[name]
            node.settings = replace(
                node.settings,
                http_credentials={f"http:{n}": c.credential for n, c in SETTINGS.clients.items()},
            )
            view = OpsView(node)
            app = build_app(
                AgencyGate(node, dry_run=node._admit),
                SETTINGS,
                max_bytes=1 << 20,
                extra=lambda app, view=view: add_ops_routes(app, view),  # type: ignore[misc]
            )
            client = await stack.enter_async_context(TestClient(TestServer(app)))
            made[name] = Face(node, view, client)
        yield made


async def operator_events(node: Node) -> list[Event]:
    since = datetime.now(UTC) - timedelta(hours=1)
    return list(reversed(await node.store.events_of_kind(EventKind.OPERATOR.value, since)))


# --- who may see and do what ---------------------------------------------------------------


async def test_the_probes_need_no_token_and_everything_else_an_operators(
    faces: dict[str, Face],
) -> None:
    http = faces[CENTRAL].http
    alive = await http.get("/healthz")
    assert (alive.status, await alive.json()) == (200, {"ok": True, "node": CENTRAL})
    ready = await http.get("/readyz")
    body = await ready.json()
    assert ready.status == 200
    assert body["store"]["ok"]
    assert body["broker"]["ok"]
    assert (await http.get("/status")).status == 401
    agency = await http.get("/status", headers=bearer("commune"))
    assert (agency.status, (await agency.json())["code"]) == (403, "auth.wrong_kind")
    who = await http.get("/v1/ops/whoami", headers=bearer("viewer"))
    assert await who.json() == {"name": "viewer", "role": "viewer", "node": CENTRAL}
    status, problem = await faces[CENTRAL].act("/v1/ops/drain", "viewer", on=True)
    assert (status, problem["code"]) == (403, "ops.viewer_only")
    assert faces[CENTRAL].node.drain is None


async def test_readyz_says_503_when_the_store_is_gone(faces: dict[str, Face]) -> None:
    face = faces[CENTRAL]
    store = face.node.store
    assert isinstance(store, SqliteStore)
    real = store.operations

    async def broken(since: datetime) -> Any:
        raise OSError("disk I/O error")

    store.operations = broken  # type: ignore[method-assign]
    try:
        answer = await face.http.get("/readyz")
        body = await answer.json()
        assert answer.status == 503
        assert body["store"] == {"ok": False, "ms": body["store"]["ms"], "error": "disk I/O error"}
        assert body["broker"]["ok"]
        view = await face.status()  # the rest of the view still comes
        assert view["health"]["store"]["ok"] is False
        assert view["node"]["id"] == CENTRAL
    finally:
        store.operations = real  # type: ignore[method-assign]


# --- what /status shows ---------------------------------------------------------------------


async def test_status_shows_links_mail_and_the_last_hours_receipts(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    answer = await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41))
    assert answer.outcome == "accepted"
    await tree.wait(G14)
    central = faces[CENTRAL]
    await central.view.look()
    view = await central.status()
    assert view["node"]["id"] == CENTRAL
    assert view["node"]["level"] == "central"
    assert view["mailboxes"]["pending_total"] == 1
    assert view["mailboxes"]["top"][0]["organ"] == G14
    assert view["receipts_last_hour"]["received"] == 1
    assert view["receipts_last_hour"]["delivered"] >= 1
    children = {link["neighbour"]: link for link in view["links"]}
    assert set(children) == set(central.node.settings.children)
    assert all(link["role"] == "child" and link["state"] == "up" for link in children.values())
    assert view["series"]["points"][-1]["delivered"] >= 1
    commune = await faces[COMMUNE_NODE].status()
    (parent,) = commune["links"]
    assert (parent["role"], parent["state"]) == ("parent", "up")  # it carried the package
    assert commune["receipts_last_hour"]["accepted"] == 1
    assert commune["node"]["level"] == "commune"


async def test_a_child_not_consuming_its_lanes_reads_down_then_up(tmp_path: Path) -> None:
    transport = MemoryTransport()
    topology = Topology({"p": None, "c": "p"}, {G14: "p", COMMUNE: "c"})
    node = Node(
        NodeSettings("p", hosted=frozenset({G14}), topology=topology),
        store=SqliteStore(tmp_path / "p"),
        transport=transport,
        admit=_never,
        node_key=NodeKey("p", ec.generate_private_key(ec.SECP256R1())),
    )
    await node.store.migrate()
    await node.declare()
    view = OpsView(node, thresholds=Thresholds(link_down_after_s=0))
    try:
        await view.look()
        status = await view.status()
        (link,) = status["links"]
        assert (link["neighbour"], link["state"]) == ("c", "down")
        assert "no consumer" in link["last_error"]
        assert [a["name"] for a in status["alerts"]] == ["LienthongLinkDown"]
        assert "c" in status["alerts"][0]["summary"]
        down_since = link["since"]
        await transport.publish(down_queue("p", "c", "normal"), Message(b"x"), timeout=1)
        await view.look()
        (link,) = (await view.status())["links"]
        assert (link["state"], link["since"]) == ("down", down_since), "since stays put"
        assert link["backlog"]["out"]["normal"] == 1
        assert link["backlog_total"] == 1
        stream = transport.consume(down_queue("p", "c", "normal"), prefetch=1)
        taken = await anext(stream)
        await taken.ack()
        await view.look()
        status = await view.status()
        (link,) = status["links"]
        assert (link["state"], link["last_error"], link["backlog_total"]) == ("up", None, 0)
        assert status["alerts"] == []
        await stream.aclose()
    finally:
        await node.store.close()


async def _never(data: bytes, policy: VerificationPolicy) -> Admitted:
    raise AssertionError("not admitted in this test")


# --- dead letters -----------------------------------------------------------------------------


async def _poison(tree: Tree, pki: DevPki, number: int) -> tuple[bytes, list[bool]]:
    """A package the commune node's admission crashes on until ``healed[0]`` is set."""
    node = tree.nodes[COMMUNE_NODE]
    data = document(pki, COMMUNE, G14, H41, number)
    real, healed = node._admit, [False]

    async def flaky(body: bytes, policy: VerificationPolicy) -> Admitted:
        if body == data and not healed[0]:
            raise PermanentFault("the parser library aborted on this package")
        return await real(body, policy)

    node._admit = flaky
    node.settings = replace(node.settings, max_attempts=2)
    answers = [(await tree.submit(COMMUNE_NODE, data)).outcome for _ in range(3)]
    assert answers[-1] == "dead-lettered", answers
    return data, healed


async def test_a_dead_letter_is_listed_with_its_reason_and_a_replay_delivers_it(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    face = faces[COMMUNE_NODE]
    _, healed = await _poison(tree, pki, 301)
    view = await face.status()
    assert view["dead_letters"]["count"] == 1
    (letter,) = view["dead_letters"]["items"]
    assert "the parser library aborted on this package" in letter["reason"]
    assert (letter["sender"], letter["source"]) == (COMMUNE, "amqp")
    status, problem = await face.act(f"/v1/ops/dead-letters/{letter['id']}/replay", "viewer")
    assert (status, problem["code"]) == (403, "ops.viewer_only")
    healed[0] = True  # the operator fixed the cause
    status, body = await face.act(
        f"/v1/ops/dead-letters/{letter['id']}/replay", note="parser upgraded"
    )
    assert (status, body["replayed"]) == (200, True)
    assert len(await tree.wait(G14)) == 1  # delivered
    (event,) = await operator_events(face.node)
    assert event.detail["action"] == "replay"
    assert (event.detail["by"], event.detail["note"]) == ("ops", "parser upgraded")
    assert event.detail["target"] == f"dead-letter:{letter['id']}"
    assert (await face.status())["dead_letters"]["count"] == 0
    status, problem = await face.act(f"/v1/ops/dead-letters/{letter['id']}/replay")
    assert (status, problem["code"]) == (404, "ops.not_dead_lettered")


async def test_a_purged_dead_letter_fails_each_recipient_with_the_operators_word(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    face = faces[COMMUNE_NODE]
    await _poison(tree, pki, 302)
    (letter,) = (await face.status())["dead_letters"]["items"]
    status, body = await face.act(
        f"/v1/ops/dead-letters/{letter['id']}/purge", note="sender asked to drop it"
    )
    assert (status, body) == (200, {"id": letter["id"], "purged": True, "failed_receipts": 2})
    since = datetime.now(UTC) - timedelta(hours=1)
    failed = await face.node.store.events_of_kind(EventKind.FAILED.value, since)
    assert {e.party for e in failed} == {G14, H41}
    assert all(e.sender == COMMUNE for e in failed)
    assert all(
        "purged by operator ops: sender asked to drop it" in str(e.detail["reason"]) for e in failed
    )
    (event,) = await operator_events(face.node)
    assert (event.detail["action"], event.detail["by"]) == ("purge", "ops")
    assert (await face.status())["dead_letters"]["count"] == 0
    assert await tree.mailbox(G14) == []
    status, problem = await face.act(f"/v1/ops/dead-letters/{letter['id']}/purge")
    assert (status, problem["code"]) == (404, "ops.not_dead_lettered")


# --- quarantine -------------------------------------------------------------------------------


async def test_a_held_package_released_over_http_is_delivered_and_a_refused_one_is_not(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    face = faces[COMMUNE_NODE]
    face.node.settings = replace(face.node.settings, sources={"amqp": PRESETS["quarantine"]})
    unsigned = example("document-new.edxml")
    first = (
        unsigned.replace(b"000.00.00.H53", G14.encode())
        .replace(b"000.21.31.H53", H41.encode())
        .replace(b"000.00.00.G22", COMMUNE.encode())
    )
    second = first.replace(b"125/UBND-VP<", b"126/UBND-VP<")
    held = [await tree.submit(COMMUNE_NODE, data) for data in (first, second)]
    assert [a.level for a in held] == ["quarantined", "quarantined"]
    view = await face.status()
    assert view["quarantine"]["count"] == 2
    listed = await face.http.get("/v1/ops/quarantine", headers=bearer("viewer"))
    items = (await listed.json())["items"]
    assert [i["message_id"] for i in items] == [a.message_id for a in held]
    assert [(i["sender"], bool(i["reason"])) for i in items] == [(COMMUNE, True)] * 2
    status, body = await face.act(
        f"/v1/ops/quarantine/{held[0].message_id}/release", note="signed on paper"
    )
    assert (status, body["decision"], body["by"]) == (200, "released", "ops")
    status, body = await face.act(f"/v1/ops/quarantine/{held[1].message_id}/refuse")
    assert (status, body["decision"]) == (200, "rejected")
    assert await tree.wait(G14) == [held[0].message_id]
    status, problem = await face.act(f"/v1/ops/quarantine/{held[1].message_id}/release")
    assert (status, problem["code"]) == (404, "quarantine.not_held")
    assert (await face.status())["quarantine"]["count"] == 0


# --- drain ------------------------------------------------------------------------------------


async def test_a_drain_stops_intake_says_so_and_takes_up_again_when_ended(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    face = faces[COMMUNE_NODE]
    status, body = await face.act("/v1/ops/drain", on=True, note="upgrade to 0.2")
    assert (status, body["draining"]) == (200, True)
    drain = (await face.status())["drain"]
    assert (drain["by"], drain["note"], drain["done"]) == ("ops", "upgrade to 0.2", True)
    refused = await face.http.post(
        "/v1/packages", data=document(pki, COMMUNE, G14, H41, 401), headers=bearer("commune")
    )
    problem = await refused.json()
    assert (refused.status, problem["code"]) == (503, "node.draining")
    waiting = asyncio.create_task(tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, 402)))
    await asyncio.sleep(0.5)
    assert not waiting.done(), "an AMQP submission waits in the queue while drained"
    assert await tree.mailbox(G14) == []
    status, body = await face.act("/v1/ops/drain", on=False)
    assert (status, body["draining"]) == (200, False)
    async with asyncio.timeout(20):
        answer = await waiting
    assert answer.outcome == "accepted"
    assert len(await tree.wait(G14)) == 1
    assert (await face.status())["drain"] is None
    events = await operator_events(face.node)
    assert [(e.detail["action"], e.detail["target"]) for e in events] == [
        ("drain", "on"),
        ("drain", "off"),
    ]


# --- search -----------------------------------------------------------------------------------


async def test_search_by_document_id_and_party_then_the_route_of_what_was_found(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    answer = await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, 501))
    await tree.wait(G14)
    (entry,) = await tree.nodes[CENTRAL].store.mailbox(G14, unfetched_only=True, limit=10)
    assert entry.document_id is not None
    face = faces[CENTRAL]
    found = await face.http.get(
        "/v1/ops/search", params={"document_id": entry.document_id}, headers=bearer("viewer")
    )
    (item,) = (await found.json())["items"]
    assert (item["message_id"], item["sender"]) == (answer.message_id, COMMUNE)
    today = datetime.now(UTC).date().isoformat()
    by_party = await face.http.get(
        "/v1/ops/search", params={"party": COMMUNE, "since": today}, headers=bearer("viewer")
    )
    assert answer.message_id in {i["message_id"] for i in (await by_party.json())["items"]}
    route = await face.http.get(f"/v1/ops/packages/{answer.message_id}", headers=bearer("viewer"))
    view = await route.json()
    assert view["hops"][0][0] == COMMUNE_NODE
    assert {r["recipient"] for r in view["recipients"]} == {G14, H41}
    empty = await face.http.get("/v1/ops/search", headers=bearer("viewer"))
    assert (empty.status, (await empty.json())["code"]) == (400, "request.invalid")


def test_an_operator_role_other_than_viewer_or_operator_is_refused_by_name() -> None:
    table = {
        "listen": "127.0.0.1:8480",
        "operators": {"night": {"token_sha256": sha("x"), "role": "admin"}},
    }
    with pytest.raises(ConfigurationError, match=r"operators\.night\.role'.*viewer, operator"):
        http_settings(table, "node.toml", base=Path("."), sources=())
    table["operators"]["night"]["role"] = "viewer"  # type: ignore[index]
    settings = http_settings(table, "node.toml", base=Path("."), sources=())
    assert settings is not None
    assert settings.operators["night"].may_act is False


async def test_metrics_move_as_packages_flow_and_carry_the_status_gauges(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    face = faces[COMMUNE_NODE]

    async def scrape() -> str:
        answer = await face.http.get("/metrics", headers=bearer("viewer"))
        assert answer.status == 200, await answer.text()
        assert answer.content_type == "text/plain"
        return await answer.text()

    def value(text: str, series: str) -> float:
        found = [line for line in text.splitlines() if line.startswith(series + " ")]
        return float(found[0].split()[-1]) if found else 0.0

    unauthorised = await face.http.get("/metrics")
    assert unauthorised.status == 401
    face.node.observer = NodeMetrics(COMMUNE_NODE)
    admitted = f'lienthong_packages_admitted_total{{node="{COMMUNE_NODE}",source="amqp"}}'
    routed = f'lienthong_packages_routed_total{{next_hop="district-31-h53",node="{COMMUNE_NODE}"}}'
    before = await scrape()
    assert value(before, admitted) == 0
    for number in (601, 602):
        assert (await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, number))).outcome
    await tree.wait(G14, 2)
    face.view.queues.clear()
    await face.view.look()
    forget = face.http.app[CACHE] if face.http.app else {}
    forget.clear()
    after = await scrape()
    assert value(after, admitted) == 2
    assert value(after, routed) == 2
    link_up = (
        f'lienthong_link_up{{neighbour="district-31-h53",node="{COMMUNE_NODE}",role="parent"}}'
    )
    assert value(after, link_up) == 1
    assert value(after, f'lienthong_dead_letters{{node="{COMMUNE_NODE}"}}') == 0


def test_ops_links_prints_a_cut_link_as_down_with_its_backlog_and_the_alert() -> None:
    view = {
        "node": {"id": "commune-x", "level": "commune", "version": "0.1.0", "uptime_s": 7200},
        "drain": None,
        "links": [
            {
                "neighbour": "district-x",
                "role": "parent",
                "state": "down",
                "since": "2026-11-29T01:00:00+00:00",
                "last_error": "connection lost: ConnectionResetError()",
                "backlog": {
                    "out": {"urgent": 0, "normal": 7, "bulk": 0},
                    "in": {"urgent": 0, "normal": 0, "bulk": 0},
                },
                "backlog_total": 7,
            }
        ],
        "upstreams": [],
        "alerts": [{"name": "LienthongLinkDown", "severity": "critical", "summary": "link down"}],
    }
    lines = cli_ops.links_lines(view)
    row = next(line for line in lines if "district-x" in line)
    assert row.split()[:4] == ["district-x", "parent", "DOWN", "2026-11-29"]
    assert "08:00:00" in row  # Vietnam time
    assert "0/7/0" in row
    assert "      7  connection lost: ConnectionResetError()" in row
    assert lines[-1] == "ALERT critical: LienthongLinkDown: link down"


async def test_the_consoles_stand_in_status_has_the_shape_of_the_real_one(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    """The render tests (tests/integration/test_console_render.py) draw a stand-in status:
    it must keep to what a node really answers, key for key."""
    await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, 701))
    await tree.wait(G14)
    real = await faces[CENTRAL].status()
    fake = realistic_status(datetime.now(UTC))

    def shape(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(value[0])] if value else []
        return None

    for part in ("node", "health", "directory", "clock", "mailboxes"):
        assert set(shape(fake[part])) <= set(shape(real[part])), part
    assert set(fake) == set(real)
    assert set(fake["links"][0]) <= set(real["links"][0])
    assert set(fake["series"]["points"][0]) == set(real["series"]["points"][0])
    assert set(fake["links"][0]["backlog"]) == set(real["links"][0]["backlog"])


class DueAtOnce:
    """A working calendar by which every delivery is due the moment it lands."""

    def end_of_working_day(self, at: datetime) -> datetime:
        return at


async def test_overdue_acknowledgements_and_the_agencies_certificates_are_listed(
    faces: dict[str, Face], tree: Tree, pki: DevPki
) -> None:
    central = faces[CENTRAL]
    central.node.settings = replace(central.node.settings, deadlines=DueAtOnce())
    answer = await tree.submit(COMMUNE_NODE, document(pki, COMMUNE, G14, H41, 801))
    await tree.wait(G14)
    # H41's delivery at its province reaches central in a report, on its way back
    await wait_for(central.node, str(answer.message_id), {G14: "delivered", H41: "delivered"})
    view = await central.status()
    # both recipients: G14's mail here, and H41's at its province, reported on the way back
    late = {row["recipient"]: row for row in view["overdue"]["items"]}
    assert view["overdue"]["count"] == 2
    assert (late[G14]["message_id"], late[G14]["sender"], late[G14]["node"]) == (
        answer.message_id,
        COMMUNE,
        CENTRAL,
    )
    assert late[H41]["node"] == "province-h41"
    listed = await central.http.get("/v1/ops/overdue", headers=bearer("viewer"))
    assert {i["recipient"] for i in (await listed.json())["items"]} == {G14, H41}
    # the commune's node knows the certificate its agency signs with
    certificates = (await faces[COMMUNE_NODE].status())["certificates"]
    (mine,) = [c for c in certificates if c["kind"] == "agency"]
    assert mine["subject"] == COMMUNE
    assert mine["days_left"] > 30
    assert mine["warn"] is False
