"""REST API v1 over the memory tree: what a QLVB system sees, end to end, and what every
kind of credential is answered on every endpoint."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.agency_gate import AgencyGate
from adapters.http_api import build_app
from adapters.ops_http import add_ops_routes
from adapters.ops_status import OpsView
from exchange.config import Credential
from exchange.config_http import HttpClient, HttpLink, HttpOperator, HttpSettings
from exchange.node import Node
from tests.conftest import example
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document

TOKENS = {
    "commune": "t-commune-qlvb-0001",
    "hosted": "t-hosted-0002",
    "ops": "t-ops-0003",
    "link": "t-link-commune-0004",  # a child node's large-package transfers: /v1/links/ only
}
CAP = 64 * 1024


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


SETTINGS = HttpSettings(
    "127.0.0.1",
    0,
    clients={
        "commune": HttpClient(
            "commune", Credential(organs=frozenset({COMMUNE})), token_sha256=sha(TOKENS["commune"])
        ),
        "hosted": HttpClient(  # a hosted QLVB serving two ministries, rate-limited
            "hosted",
            Credential(organs=frozenset({G14, "000.00.00.G22"})),
            token_sha256=sha(TOKENS["hosted"]),
            rate_per_s=50,
        ),
    },
    operators={"ops": HttpOperator("ops", sha(TOKENS["ops"]))},
    links={"commune-21-31-h53": HttpLink("commune-21-31-h53", sha(TOKENS["link"]))},
)


@dataclass
class Faces:
    commune: TestClient  # the REST API of the commune's node
    central: TestClient  # and of central, home of G14


def serve(node: Node) -> TestServer:
    node.settings = replace(
        node.settings,
        http_credentials={f"http:{n}": c.credential for n, c in SETTINGS.clients.items()},
    )
    gate = AgencyGate(node, dry_run=node._admit)  # the node's own admission, storing nothing
    view = OpsView(node)
    return TestServer(
        build_app(gate, SETTINGS, max_bytes=CAP, extra=lambda app: add_ops_routes(app, view))
    )


@pytest.fixture
async def faces(tree: Tree) -> AsyncIterator[Faces]:
    async with (
        TestClient(serve(tree.nodes["commune-21-31-h53"])) as commune,
        TestClient(serve(tree.nodes["central"])) as central,
    ):
        yield Faces(commune, central)


def bearer(who: str) -> dict[str, str]:
    if who in TOKENS:
        return {"Authorization": f"Bearer {TOKENS[who]}"}
    if who == "wrong":
        return {"Authorization": "Bearer not-a-token"}
    if who == "node link":  # a child node's link login, its AMQP password tried as a token
        return {"Authorization": "Bearer link-commune-21-31-h53:its-amqp-password"}
    return {}


async def test_a_commune_system_sends_and_a_ministry_system_fetches_and_acknowledges(
    faces: Faces, pki: DevPki
) -> None:
    data = document(pki, COMMUNE, G14, H41)
    sent = await faces.commune.post("/v1/packages", data=data, headers=bearer("commune"))
    assert sent.status == 201, await sent.text()
    answer = await sent.json()
    assert (answer["outcome"], answer["level"]) == ("accepted", "strict")
    again = await faces.commune.post("/v1/packages", data=data, headers=bearer("commune"))
    assert (again.status, (await again.json())["message_id"]) == (200, answer["message_id"])
    # the ministry's system long-polls its mailbox at central
    page = await faces.central.get(
        f"/v1/agencies/{G14}/mailbox", params={"wait": "20"}, headers=bearer("hosted")
    )
    items = (await page.json())["items"]
    assert [i["message_id"] for i in items] == [answer["message_id"]]
    got = await faces.central.get(
        f"/v1/agencies/{G14}/packages/{answer['message_id']}", headers=bearer("hosted")
    )
    assert await got.read() == data  # the exact bytes
    assert got.headers["Digest"] == f"sha-256={hashlib.sha256(data).hexdigest()}"
    # streamed from the store's file, so a system cut off half way takes up from there
    rest = await faces.central.get(
        f"/v1/agencies/{G14}/packages/{answer['message_id']}",
        headers={**bearer("hosted"), "Range": f"bytes={len(data) // 2}-"},
    )
    assert rest.status == 206
    assert await rest.read() == data[len(data) // 2 :]
    ack = await faces.central.post(
        f"/v1/agencies/{G14}/packages/{answer['message_id']}/ack", headers=bearer("hosted")
    )
    assert (await ack.json())["now"] == 1
    empty = await faces.central.get(f"/v1/agencies/{G14}/mailbox", headers=bearer("hosted"))
    assert (await empty.json())["items"] == []
    # and the sender's system sees it fetched there
    async with asyncio.timeout(20):
        while True:
            view = await faces.commune.get(
                f"/v1/agencies/{COMMUNE}/sent/{answer['message_id']}", headers=bearer("commune")
            )
            rows = {r["recipient"]: r for r in (await view.json())["recipients"]}
            if rows[G14]["transport"] == "fetched":
                break
            await asyncio.sleep(0.05)
    assert rows[G14]["node"] == "central"


async def test_each_refusal_has_its_status_and_code_and_delivers_nothing(
    faces: Faces, tree: Tree, pki: DevPki
) -> None:
    async def refused(response: object, status: int, code: str) -> dict[str, object]:
        assert response.status == status, await response.text()  # type: ignore[attr-defined]
        assert response.content_type == "application/problem+json"  # type: ignore[attr-defined]
        body: dict[str, object] = await response.json()  # type: ignore[attr-defined]
        assert body["code"] == code
        return body

    post = faces.commune.post
    data = document(pki, COMMUNE, G14, H41, 150)
    await refused(await post("/v1/packages", data=data), 401, "auth.unauthenticated")
    await refused(
        await post("/v1/packages", data=data, headers=bearer("wrong")), 401, "auth.unauthenticated"
    )
    # the commune's credential sending a ministry's document
    ministry = document(pki, G14, H41, COMMUNE, 151)
    await refused(
        await post("/v1/packages", data=ministry, headers=bearer("commune")),
        403,
        "submitter.not_sender",
    )
    await refused(
        await post("/v1/packages", data=b"<x/>" * (CAP // 4 + 1), headers=bearer("commune")),
        413,
        "package.too_large",
    )
    broken = await refused(
        await post(
            "/v1/validate",
            data=example("document-new.edxml").replace(
                b"<edXML:DocumentId>", b"<edXML:DocumentIdd>", 1
            ),
            headers=bearer("commune"),
        ),
        422,
        "xml.malformed",
    )
    assert broken["detail"]
    await refused(
        await faces.central.get(f"/v1/agencies/{H41}/mailbox", headers=bearer("hosted")),
        403,
        "agency.not_yours",
    )
    await refused(
        await faces.central.get("/v1/ops/dead-letters", headers=bearer("hosted")),
        403,
        "auth.wrong_kind",
    )
    # nothing reached anybody
    assert await tree.mailbox(H41) == []
    assert await tree.mailbox(G14) == []


async def test_a_package_refused_as_invalid_lists_each_problem_on_submit_too(
    faces: Faces, pki: DevPki
) -> None:
    data = example("document-new.edxml").replace(
        b"<edXML:CodeNumber>125<", b"<edXML:CodeNumber><", 1
    )
    answer = await faces.commune.post("/v1/packages", data=data, headers=bearer("commune"))
    assert answer.status == 422
    body = await answer.json()
    assert body["code"] == "contract.invalid"
    assert body["problems"]
    assert {"line", "path", "message"} <= set(body["problems"][0])


async def test_a_contract_violation_lists_each_problem(faces: Faces, pki: DevPki) -> None:
    data = example("document-new.edxml").replace(
        b"<edXML:CodeNumber>125<", b"<edXML:CodeNumber><", 1
    )
    answer = await faces.commune.post("/v1/validate", data=data, headers=bearer("commune"))
    assert answer.status == 422
    body = await answer.json()
    assert body["code"] == "contract.invalid"
    assert body["problems"]
    assert {"line", "path", "message"} <= set(body["problems"][0])


async def test_a_credential_past_its_rate_is_told_to_wait(faces: Faces) -> None:
    statuses = [
        (await faces.central.get("/v1/directory", headers=bearer("hosted"))).status
        for _ in range(120)
    ]
    assert statuses[0] == 200
    assert 429 in statuses
    late = await faces.central.get("/v1/directory", headers=bearer("hosted"))
    if late.status == 429:
        assert late.headers["Retry-After"] == "1"


ENDPOINTS = [
    ("POST", "/v1/packages"),
    ("POST", "/v1/validate"),
    ("GET", f"/v1/agencies/{G14}/mailbox"),
    ("GET", f"/v1/agencies/{G14}/packages/m-x"),
    ("POST", f"/v1/agencies/{G14}/packages/m-x/ack"),
    ("GET", f"/v1/agencies/{G14}/sent/m-x"),
    ("GET", "/v1/directory"),
    ("GET", "/v1/ops/dead-letters"),
    ("GET", "/v1/openapi.json"),
]
# who -> the status of each endpoint above, at central (G14's home node); "another" is a
# credential for another agency, "hosted" the system allowed to act for G14
MATRIX = {
    "none": [401, 401, 401, 401, 401, 401, 401, 401, 200],
    "wrong": [401, 401, 401, 401, 401, 401, 401, 401, 200],
    "another": [422, 422, 403, 403, 403, 403, 200, 403, 200],
    "hosted": [422, 422, 200, 404, 404, 404, 200, 403, 200],
    "ops": [403, 403, 403, 403, 403, 403, 403, 200, 200],
    "link": [403, 403, 403, 403, 403, 403, 403, 403, 200],
}


async def test_the_authorisation_matrix(faces: Faces) -> None:
    seen = {}
    for who in MATRIX:
        headers = bearer("commune" if who == "another" else who)
        row = []
        for method, path in ENDPOINTS:
            response = await faces.central.request(method, path, data=b"<x/>", headers=headers)
            row.append(response.status)
        seen[who] = row
    assert seen == MATRIX


async def test_an_idempotency_key_reused_with_other_bytes_is_refused(
    faces: Faces, tree: Tree, pki: DevPki
) -> None:
    first, other = document(pki, COMMUNE, G14, H41, 170), document(pki, COMMUNE, G14, H41, 171)
    headers = {**bearer("commune"), "Idempotency-Key": "send-170"}
    sent = await faces.commune.post("/v1/packages", data=first, headers=headers)
    again = await faces.commune.post("/v1/packages", data=first, headers=headers)
    assert (sent.status, again.status) == (201, 200)
    assert (await again.json())["message_id"] == (await sent.json())["message_id"]
    reused = await faces.commune.post("/v1/packages", data=other, headers=headers)
    assert reused.status == 422
    assert (await reused.json())["code"] == "idempotency.key_reused"
    # the other bytes never entered the node
    store = tree.nodes["commune-21-31-h53"].store
    assert await store.find_digest(hashlib.sha256(other).hexdigest()) is None
    assert await store.find_digest(hashlib.sha256(first).hexdigest()) is not None
