"""The national-axis SDK facade as a QLVB system on the SDK sees it: send at the commune's
node, receive at the ministry's, every call signed with XroadVnpt- headers.

The client here is written from the scheme in docs/sdk-facade.md (its own HMAC and hex
code, not the server's), and checked against fixed vectors computed once with openssl
and sha256sum."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.agency_gate import AgencyGate
from adapters.rate_limit import TokenBucket
from adapters.sdk_facade import add_sdk_routes
from exchange import xroad
from exchange.admission import Admission, Admitted, admit
from exchange.config import Credential
from exchange.config_http import HttpClient
from exchange.errors import SdkSignatureInvalid
from exchange.node import Node
from exchange.policy import VerificationPolicy
from tests.pki import DevPki
from tests.unit.memory_tree import COMMUNE, G14, H41, Tree, document

G22 = "000.00.00.G22"
MAX_BYTES = 64 * 1024
STAMP = "20112026T103000+0123"  # ddMMyyyy'T'HHmmss+SSSS, fixed when an SDK object is built

# Vector 1: HMAC-SHA256 of this exact sign-header string under this secret
#   printf '%s' "$SIGN_HEADER" | openssl dgst -sha256 -hmac 'vector-secret-0123456789'
VECTOR_SECRET = b"vector-secret-0123456789"
VECTOR_SIGN_HEADER = (
    '{"XroadVnpt-systemid":"000.00.00.H53","XroadVnpt-timestamp":"20112026T103000+0123",'
    '"XroadVnpt-servicetype":"eDoc","XroadVnpt-messagetype":"edoc"}'
)
VECTOR_HASH_HEADER = "40f1850fde73af214f4158e9ac3caf6c1dd23f9f6aabb1871ff38e458d578017"
# Vector 2: SHA-256 of these bytes is 502f0f99…4e0a…730ec7…; the SDK drops each byte's
# leading zero (0f -> f, 0a -> a, 0e -> e):
#   printf '%s' 'lienthong test vector 1' | sha256sum | cut -c1-64 | fold -w2 | sed 's/^0//'
VECTOR_FILE = b"lienthong test vector 1"
VECTOR_FILE_PADDED = "502f0f9922dea1cb4585350a6f7b9eb6c8987f3f3097e3d7730ec74edc4c6cd6"
VECTOR_FILE_HASH = "502ff9922dea1cb458535a6f7b9eb6c8987f3f3097e3d773ec74edc4c6cd6"


# --- the test's own SDK client -------------------------------------------------------------


def mac(secret: bytes, sign_header: str) -> str:
    return hmac.new(secret, sign_header.encode("utf-8"), hashlib.sha256).hexdigest()


def java_hex(data: bytes) -> str:
    return "".join(f"{byte:x}" for byte in hashlib.sha256(data).digest())


def multipart(data: bytes, name: str = "file_doc") -> tuple[bytes, str]:
    boundary = "----SdkBoundary7MA4YWxkTrZu0gW"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
        'filename="edoc.edxml"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    return head.encode() + data + f"\r\n--{boundary}--\r\n".encode(), (
        f"multipart/form-data; boundary={boundary}"
    )


@dataclass
class Reply:
    status: int
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found

    def code(self) -> str:
        """Our code, from the front of ErrorDesc."""
        return str(self.json["ErrorDesc"]).partition("]")[0].lstrip("[")


@dataclass
class Sdk:
    """A QLVB system calling as SDKVXP does: every field an XroadVnpt- header, signed."""

    http: TestClient[web.Request, web.Application]
    systemid: str
    secret: bytes

    def headers(self, fields: dict[str, str]) -> dict[str, str]:
        fields = {"systemid": self.systemid, "timestamp": STAMP, **fields}
        signed = {f"XroadVnpt-{name}": value for name, value in fields.items()}
        sign_header = json.dumps(signed, separators=(",", ":"), ensure_ascii=False)
        return {
            **signed,
            "XroadVnpt-sign-header-key": ";".join(fields),
            "XroadVnpt-sign-header": sign_header,
            "XroadVnpt-hash-header": mac(self.secret, sign_header),
            "User-Agent": "JAVASDKAgent/1.0.0 XRoad/VPCP",
            "XroadVnpt-version": "3.0.201608",
        }

    async def raw(
        self, method: str, op: str, headers: dict[str, str], body: bytes | None = None
    ) -> Reply:
        async with self.http.request(method, f"/vdxp/{op}", headers=headers, data=body) as got:
            return Reply(got.status, await got.read())

    async def call(self, op: str, method: str = "POST", **fields: str) -> Reply:
        """A JSON call: the fields are both signed headers and the body, as the SDK does."""
        headers = self.headers({"Content-Type": "application/json", **fields})
        headers["Content-Type"] = "application/json"
        body = json.dumps(fields).encode() if method == "POST" else None
        return await self.raw(method, op, headers, body)

    def send_request(
        self, data: bytes, sender: str, messagetype: str = "edoc"
    ) -> tuple[dict[str, str], bytes]:
        body, content_type = multipart(data)
        headers = self.headers(
            {
                "servicetype": "eDoc",
                "messagetype": messagetype,
                "from": sender,
                "Content-Type": "multipart/form-data",
                "hash-file": java_hex(data),
            }
        )
        headers["Content-Type"] = content_type
        return headers, body

    async def send(self, data: bytes, sender: str) -> Reply:
        headers, body = self.send_request(data, sender)
        return await self.raw("POST", "sendEdoc", headers, body)

    async def received(self, messagetype: str = "edoc") -> list[dict[str, str]]:
        got = await self.call("getReceivedEdocList", servicetype="eDoc", messagetype=messagetype)
        assert (got.status, got.json["status"], got.json["ErrorCode"]) == (200, "OK", "0"), got
        rows: list[dict[str, str]] = got.json["data"]
        return rows


def test_the_test_client_computes_the_documented_scheme() -> None:
    assert mac(VECTOR_SECRET, VECTOR_SIGN_HEADER) == VECTOR_HASH_HEADER
    assert hashlib.sha256(VECTOR_FILE).hexdigest() == VECTOR_FILE_PADDED
    assert java_hex(VECTOR_FILE) == VECTOR_FILE_HASH


def test_the_server_computes_the_same_vectors() -> None:
    assert xroad.sign_header_mac(VECTOR_SECRET, VECTOR_SIGN_HEADER.encode()) == VECTOR_HASH_HEADER
    assert xroad.file_hash(VECTOR_FILE) == VECTOR_FILE_HASH
    assert xroad.sdk_hex(bytes([0x00, 0x0A, 0xFF, 0x10])) == "0aff10"


def test_a_signature_over_the_vector_verifies_and_a_wrong_secret_does_not() -> None:
    headers = {
        "systemid": ["000.00.00.H53"],
        "timestamp": ["20112026T103000+0123"],
        "servicetype": ["eDoc"],
        "messagetype": ["edoc"],
        "sign-header-key": ["systemid;timestamp;servicetype;messagetype"],
        "sign-header": [VECTOR_SIGN_HEADER],
        "hash-header": [VECTOR_HASH_HEADER],
    }
    signed = xroad.verify_request(headers, "000.00.00.H53", VECTOR_SECRET)
    assert signed.get("MessageType") == "edoc"
    # a header outside the signature is never read
    unsigned_from = {**headers, "from": ["000.00.00.G22"]}
    assert xroad.verify_request(unsigned_from, "000.00.00.H53", VECTOR_SECRET).get("from") is None
    with pytest.raises(SdkSignatureInvalid):
        xroad.verify_request(headers, "000.00.00.H53", b"another-secret-0123456789")
    with pytest.raises(SdkSignatureInvalid):  # sent twice: which one is meant?
        xroad.verify_request(
            {**headers, "hash-header": [VECTOR_HASH_HEADER] * 2}, "000.00.00.H53", VECTOR_SECRET
        )
    twice = '{"XroadVnpt-systemid":"s","XroadVnpt-from":"a","XroadVnpt-from":"b"}'
    with pytest.raises(SdkSignatureInvalid):  # one key twice in the signed JSON
        xroad.verify_request(
            {
                **headers,
                "systemid": ["s"],
                "sign-header": [twice],
                "hash-header": [mac(VECTOR_SECRET, twice)],
                "sign-header-key": ["systemid"],
            },
            "s",
            VECTOR_SECRET,
        )


def test_a_token_bucket_allows_its_burst_then_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(2.0, 4.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(5)] == [True, True, True, True, False]
    assert bucket.wait_s() == pytest.approx(0.5)
    now[0] += 0.5
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] += 60  # a quiet minute fills the bucket to its burst, not past it
    assert sum(bucket.take() for _ in range(10)) == 4


# --- two faces over the memory tree: the commune's node and central -------------------------


def client(name: str, organ: str, rate: float = 1000.0) -> HttpClient:
    return HttpClient(
        name=name,
        credential=Credential(organs=frozenset({organ})),
        systemid=f"sys.{name}",
        hmac_secret=f"secret-of-{name}-0123456789".encode(),
        rate_per_s=rate,
    )


CLIENTS = {c.name: c for c in (client("commune", COMMUNE), client("ministry", G14))}
CLIENTS["vpcp"] = client("vpcp", G22)


def as_sdk(http: TestClient[web.Request, web.Application], configured: HttpClient) -> Sdk:
    assert configured.systemid is not None
    assert configured.hmac_secret is not None
    return Sdk(http, configured.systemid, configured.hmac_secret)


@dataclass
class Faces:
    tree: Tree
    commune: Sdk  # COMMUNE's system, at the commune's node
    ministry: Sdk  # G14's system, at central
    vpcp: Sdk  # G22's system, at central
    serve: Callable[..., Any]  # another face: (node, clients, clock) -> TestClient


@pytest.fixture
async def faces(tree: Tree, admission: Admission) -> AsyncIterator[Faces]:
    async def dry_run(data: bytes, policy: VerificationPolicy) -> Admitted:
        return await asyncio.to_thread(admit, data, policy, admission)

    async with AsyncExitStack() as stack:

        async def serve(
            node: Node, clients: dict[str, HttpClient], clock: Callable[[], float] | None = None
        ) -> TestClient[web.Request, web.Application]:
            app = web.Application()
            gate = AgencyGate(node, dry_run=dry_run)
            if clock is None:
                add_sdk_routes(app, gate, clients, max_bytes=MAX_BYTES)
            else:
                add_sdk_routes(app, gate, clients, max_bytes=MAX_BYTES, clock=clock)
            http: TestClient[web.Request, web.Application] = TestClient(TestServer(app))
            return await stack.enter_async_context(http)

        at_commune = await serve(tree.nodes["commune-21-31-h53"], CLIENTS)
        at_central = await serve(tree.nodes["central"], CLIENTS)

        yield Faces(
            tree,
            as_sdk(at_commune, CLIENTS["commune"]),
            as_sdk(at_central, CLIENTS["ministry"]),
            as_sdk(at_central, CLIENTS["vpcp"]),
            serve,
        )


def ok(reply: Reply) -> dict[str, Any]:
    assert reply.status == 200, reply
    assert (reply.json["status"], reply.json["ErrorCode"]) == ("OK", "0"), reply.json
    return reply.json


def refused(reply: Reply, http: int, sdk_code: str, code: str) -> None:
    assert reply.status == http, reply
    assert (reply.json["status"], reply.json["ErrorCode"]) == ("FAIL", sdk_code), reply.json
    assert reply.code() == code, reply.json


async def test_a_commune_sends_and_a_ministry_fetches_the_exact_bytes(
    faces: Faces, pki: DevPki
) -> None:
    data = document(pki, COMMUNE, G14, H41)
    doc_id = ok(await faces.commune.send(data, COMMUNE))["DocId"]
    assert await faces.tree.wait(G14) == [doc_id]

    (row,) = await faces.ministry.received()
    assert row["docId"] == doc_id
    assert (row["from"], row["to"], row["messageType"]) == (COMMUNE, G14, "edoc")
    assert row["serviceType"] == "eDoc"
    assert row["status"] == "initial"
    assert await faces.ministry.received("status") == []
    count = await faces.ministry.call("countReceiveEdoc", method="GET")
    assert ok(count)["count"] == 1

    got = ok(await faces.ministry.call("getEdoc", docId=doc_id))
    assert base64.b64decode(got["data"]) == data
    download = await faces.ministry.call("downloadEdoc", method="GET", docId=doc_id)
    assert (download.status, download.body) == (200, data)

    # fail and processing leave it pending; done takes it off the list, and again is harmless
    for status in ("processing", "fail"):
        ok(await faces.ministry.call("updateStatus", docId=doc_id, status=status))
        assert [r["docId"] for r in await faces.ministry.received()] == [doc_id]
    ok(await faces.ministry.call("updateStatus", docid=doc_id, status="done"))
    assert await faces.ministry.received() == []
    ok(await faces.ministry.call("updateStatus", docId=doc_id, status="done"))
    assert ok(await faces.ministry.call("countReceiveEdoc", method="GET"))["count"] == 0
    # a status value the facade does not know
    refused(
        await faces.ministry.call("updateStatus", docId=doc_id, status="archived"),
        400,
        "400",
        "sdk.request_invalid",
    )

    # the sender asks after it: a row per recipient
    sent = ok(await faces.commune.call("getSentEdocList", messagetype="edoc", docId=doc_id))
    rows = {r["toCode"]: r for r in sent["data"]}
    assert set(rows) == {G14, H41}
    assert rows[G14]["senderDocId"] == doc_id
    assert rows[G14]["fromCode"] == COMMUNE
    assert rows[G14]["notation"] == "125/UBND-VP"


async def test_the_directory_as_the_sdk_lists_it(faces: Faces) -> None:
    rows = {r["code"]: r for r in ok(await faces.ministry.call("getAgenciesList"))["data"]}
    assert rows[G14] == {
        "id": G14,
        "code": G14,
        "pid": "central",
        "name": "",
        "mail": "",
        "oldCode": "",
    }
    assert rows[H41]["oldCode"] == "000.00.00.H99"  # a merged agency's old code leads to it
    assert rows[COMMUNE]["pid"] == "commune-21-31-h53"


async def test_a_replayed_send_answers_the_same_doc_id(faces: Faces, pki: DevPki) -> None:
    headers, body = faces.commune.send_request(document(pki, COMMUNE, G14, H41, 127), COMMUNE)
    first = ok(await faces.commune.raw("POST", "sendEdoc", headers, body))
    again = ok(await faces.commune.raw("POST", "sendEdoc", headers, body))
    assert again["DocId"] == first["DocId"]
    assert await faces.tree.wait(G14) == [first["DocId"]]


async def test_calls_without_a_known_system_or_a_valid_signature_are_refused(
    faces: Faces,
) -> None:
    sdk = faces.ministry
    headers = sdk.headers({"servicetype": "eDoc", "messagetype": "edoc"})
    del headers["XroadVnpt-systemid"]
    reply = await sdk.raw("POST", "getReceivedEdocList", headers)
    refused(reply, 401, "401", "sdk.system_unknown")

    stranger = Sdk(sdk.http, "sys.nobody", b"secret-of-nobody-0123456789")
    refused(await stranger.call("getAgenciesList"), 401, "401", "sdk.system_unknown")

    headers = sdk.headers({"servicetype": "eDoc", "messagetype": "edoc"})
    last = headers["XroadVnpt-hash-header"][-1]
    headers["XroadVnpt-hash-header"] = headers["XroadVnpt-hash-header"][:-1] + (
        "0" if last != "0" else "1"
    )
    refused(
        await sdk.raw("POST", "getReceivedEdocList", headers), 401, "401", "sdk.signature_invalid"
    )

    headers = sdk.headers({"servicetype": "eDoc", "messagetype": "edoc"})
    del headers["XroadVnpt-hash-header"]
    refused(
        await sdk.raw("POST", "getReceivedEdocList", headers), 401, "401", "sdk.signature_invalid"
    )

    # signed with another system's secret
    borrowed = Sdk(sdk.http, sdk.systemid, faces.vpcp.secret)
    refused(await borrowed.call("getAgenciesList"), 401, "401", "sdk.signature_invalid")

    headers = sdk.headers({"timestamp": "yesterday"})
    refused(await sdk.raw("POST", "getAgenciesList", headers), 401, "401", "sdk.timestamp_invalid")


async def test_a_header_changed_outside_the_signature_is_refused(faces: Faces, pki: DevPki) -> None:
    data = document(pki, COMMUNE, G14, H41, 128)
    headers, body = faces.commune.send_request(data, COMMUNE)
    headers["XroadVnpt-from"] = G22
    reply = await faces.commune.raw("POST", "sendEdoc", headers, body)
    refused(reply, 401, "401", "sdk.header_mismatch")
    # dropping it from the list of signed names does not help: the signed JSON still says
    headers["XroadVnpt-sign-header-key"] = headers["XroadVnpt-sign-header-key"].replace("from;", "")
    reply = await faces.commune.raw("POST", "sendEdoc", headers, body)
    refused(reply, 401, "401", "sdk.header_mismatch")
    # nor does a body that says otherwise than the signature
    headers = faces.ministry.headers({"servicetype": "eDoc", "messagetype": "edoc"})
    body = json.dumps({"servicetype": "eDoc", "messagetype": "status"}).encode()
    reply = await faces.ministry.raw("POST", "getReceivedEdocList", headers, body)
    refused(reply, 401, "401", "sdk.header_mismatch")
    # a file other than the one whose hash is signed
    headers, _ = faces.commune.send_request(data, COMMUNE)
    other, _ = multipart(data.replace(b"128/UBND-VP", b"999/UBND-VP"))
    reply = await faces.commune.raw("POST", "sendEdoc", headers, other)
    refused(reply, 401, "401", "sdk.file_hash_mismatch")
    assert (
        await faces.tree.nodes["commune-21-31-h53"].store.document(
            f"{COMMUNE},2026/11/20,128/UBND-VP"
        )
        is None
    )


async def test_sending_for_an_agency_outside_the_systems_set_is_forbidden(
    faces: Faces, pki: DevPki
) -> None:
    rogue = document(pki, G22, G14, H41, 129)
    refused(await faces.commune.send(rogue, G22), 403, "403", "agency.not_yours")
    commune = faces.tree.nodes["commune-21-31-h53"]
    assert await commune.store.document(f"{G22},2026/11/20,129/UBND-VP") is None
    # the signed from is the caller's, the package another's: the node refuses it
    reply = await faces.commune.send(rogue, COMMUNE)
    refused(reply, 200, "403", "submitter.not_sender")
    legit = ok(await faces.commune.send(document(pki, COMMUNE, G14, H41, 130), COMMUNE))
    assert await faces.tree.wait(G14) == [legit["DocId"]]


async def test_another_agencys_mail_is_not_found_and_not_read(faces: Faces, pki: DevPki) -> None:
    doc_id = ok(await faces.commune.send(document(pki, COMMUNE, G14, H41, 131), COMMUNE))["DocId"]
    await faces.tree.wait(G14)
    reply = await faces.vpcp.call("getEdoc", docId=doc_id)
    refused(reply, 200, "404", "mailbox.not_found")
    assert "data" not in reply.json
    reply = await faces.vpcp.call("downloadEdoc", method="GET", docId=doc_id)
    refused(reply, 404, "404", "mailbox.not_found")
    refused(
        await faces.vpcp.call("updateStatus", docId=doc_id, status="done"),
        200,
        "404",
        "mailbox.not_found",
    )
    assert await faces.vpcp.received() == []
    assert [r["docId"] for r in await faces.ministry.received()] == [doc_id]  # still pending
    # nor may the ministry ask after what the commune sent
    reply = await faces.ministry.call("getSentEdocList", docId=doc_id)
    refused(reply, 200, "404", "status.not_tracked")


async def test_a_package_over_the_cap_is_refused_before_it_is_held(
    faces: Faces, pki: DevPki
) -> None:
    big = b"<x>" + b"a" * MAX_BYTES + b"</x>"  # streamed: its Content-Length looks acceptable
    refused(await faces.commune.send(big, COMMUNE), 413, "413", "package.too_large")
    huge = b"a" * (3 * MAX_BYTES)  # refused from its Content-Length alone
    refused(await faces.commune.send(huge, COMMUNE), 413, "413", "package.too_large")


async def test_a_malformed_multipart_body_is_a_bad_request(faces: Faces, pki: DevPki) -> None:
    data = document(pki, COMMUNE, G14, H41, 132)
    headers, body = faces.commune.send_request(data, COMMUNE)
    for broken in (b"no multipart here", body[: len(body) // 2]):
        reply = await faces.commune.raw("POST", "sendEdoc", headers, broken)
        refused(reply, 400, "400", "sdk.request_invalid")
    wrong_part, _ = multipart(data, name="file")
    reply = await faces.commune.raw("POST", "sendEdoc", headers, wrong_part)
    refused(reply, 400, "400", "sdk.request_invalid")
    headers["Content-Type"] = "application/json"
    reply = await faces.commune.raw("POST", "sendEdoc", headers, b"{}")
    refused(reply, 400, "400", "sdk.request_invalid")


async def test_a_package_the_node_refuses_is_read_as_json(faces: Faces, pki: DevPki) -> None:
    data = document(pki, COMMUNE, G14, H41, 133).replace(b"UBND-VP", b"UBND-XX")  # signed before
    reply = await faces.commune.send(data, COMMUNE)
    refused(reply, 200, "422", "signature.invalid")


async def test_a_system_calling_faster_than_its_rate_is_told_to_wait(faces: Faces) -> None:
    now = [0.0]
    slow = client("slow", G14, rate=1.0)  # bursts of two
    http = await faces.serve(faces.tree.nodes["central"], {"slow": slow}, lambda: now[0])
    sdk = as_sdk(http, slow)
    ok(await sdk.call("countReceiveEdoc", method="GET"))
    ok(await sdk.call("countReceiveEdoc", method="GET"))
    reply = await sdk.call("countReceiveEdoc", method="GET")
    refused(reply, 429, "429", "http.rate_limited")
    now[0] += 1.0
    ok(await sdk.call("countReceiveStatus", method="GET"))


# The SDK facade's authorisation matrix, at central (G14's home): every operation against
# every kind of caller, as (HTTP status, SDK ErrorCode). "another" is a system of another
# agency (G22's) asking about G14's mail and sending in G14's name; "allowed" is G14's own.
SDK_MATRIX = {
    "none": [(401, "401")] * 8,
    "wrong": [(401, "401")] * 8,
    "another": [
        (403, "403"),  # sendEdoc from G14
        (200, "0"),  # getReceivedEdocList: its own list, without G14's mail
        (200, "404"),  # getEdoc of G14's package
        (404, "404"),  # downloadEdoc of it
        (200, "404"),  # updateStatus of it
        (200, "404"),  # getSentEdocList of what G14 sent
        (200, "0"),  # getAgenciesList
        (200, "0"),  # countReceiveEdoc: its own count
    ],
    "allowed": [(200, "0")] * 3 + [(200, "bytes")] + [(200, "0")] * 4,  # downloadEdoc: raw
    # a child node's link login is no SDK system: its id is no systemid of this node
    "node link": [(401, "401")] * 8,
    # an operator has no SDK identity: its REST token is not an XroadVnpt- signature
    "operator": [(401, "401")] * 8,
}


async def test_the_sdk_authorisation_matrix(faces: Faces, pki: DevPki) -> None:
    doc_id = ok(await faces.commune.send(document(pki, COMMUNE, G14, H41, 190), COMMUNE))["DocId"]
    assert doc_id in await faces.tree.wait(G14)
    own = document(pki, G14, H41, COMMUNE, 191)
    own_id = ok(await faces.ministry.send(own, G14))["DocId"]  # a document G14 sent
    wrong = Sdk(faces.ministry.http, faces.ministry.systemid, b"not-the-secret-of-this-system")
    nobody = faces.ministry

    async def row(sdk: Sdk | dict[str, str] | None) -> list[tuple[int, str]]:
        calls: list[Reply] = []
        if sdk is None or isinstance(sdk, dict):  # no XroadVnpt- headers at all
            for method, op in (
                ("POST", "sendEdoc"),
                ("POST", "getReceivedEdocList"),
                ("POST", "getEdoc"),
                ("GET", "downloadEdoc"),
                ("POST", "updateStatus"),
                ("POST", "getSentEdocList"),
                ("POST", "getAgenciesList"),
                ("GET", "countReceiveEdoc"),
            ):
                headers = sdk if isinstance(sdk, dict) else {}
                calls.append(
                    await nobody.raw(method, op, headers, b"{}" if method == "POST" else None)
                )
        else:
            calls.append(await sdk.send(own, G14))
            calls.append(
                await sdk.call("getReceivedEdocList", servicetype="eDoc", messagetype="edoc")
            )
            calls.append(await sdk.call("getEdoc", docId=doc_id))
            calls.append(await sdk.call("downloadEdoc", method="GET", docId=doc_id))
            calls.append(await sdk.call("updateStatus", docId=doc_id, status="processing"))
            calls.append(
                await sdk.call(
                    "getSentEdocList", servicetype="eDoc", messagetype="edoc", docId=own_id
                )
            )
            calls.append(await sdk.call("getAgenciesList"))
            calls.append(await sdk.call("countReceiveEdoc", method="GET"))
        return [
            (r.status, str(r.json.get("ErrorCode")) if r.body.startswith(b"{") else "bytes")
            for r in calls
        ]

    link = Sdk(faces.ministry.http, "commune-21-31-h53", b"the-link-logins-amqp-password")
    seen = {
        "node link": await row(link),
        "none": await row(None),
        "operator": await row({"Authorization": "Bearer an-operators-rest-token"}),
        "wrong": await row(wrong),
        "another": await row(faces.vpcp),
        "allowed": await row(faces.ministry),
    }
    assert seen == SDK_MATRIX
