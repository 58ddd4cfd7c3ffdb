"""The VDXP client (adapters/upstream_vdxp.py) against fixed protocol vectors, against our
own SDK facade in-process, and against a fake axis that is down, slow, garbled or refusing.

The vectors come from outside our code: the HMAC from ``openssl dgst -sha256 -hmac``, the
hash from ``sha256sum`` with each byte's leading zero dropped by hand, as the SDK does."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest
from aiohttp import BodyPartReader, web
from aiohttp.test_utils import TestServer, unused_port

from adapters.upstream_vdxp import VdxpClient
from exchange import xroad
from exchange.errors import (
    UpstreamGarbled,
    UpstreamRefused,
    UpstreamUnauthorised,
    UpstreamUnavailable,
)
from exchange.upstream import PendingItem, UpstreamAgency, UpstreamCredential, UpstreamSettings
from tests.pki import DevPki
from tests.unit import test_sdk_facade as facade
from tests.unit.memory_tree import COMMUNE, G14, H41, OLD_H41, document

faces = facade.faces  # the fixture: the SDK facade at the commune's node and at central

# printf '%s' "$SIGN_HEADER" | openssl dgst -sha256 -hmac '0123456789abcdef'
SECRET = b"0123456789abcdef"
SYSTEM = "000.00.00.H53"
AT = datetime(2026, 11, 28, 9, 5, 7, 42000)
STAMP = "28112026T090507+0042"
SIGN_HEADER = (
    '{"XroadVnpt-systemid":"000.00.00.H53","XroadVnpt-timestamp":"28112026T090507+0042",'
    '"XroadVnpt-servicetype":"eDoc","XroadVnpt-messagetype":"edoc"}'
)
HASH_HEADER = "619825ae690c9c5f913fa08ac4b202a6718333610795971c4b049fe34ed9c6cd"
# printf abc | sha256sum: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad;
# the SDK writes 0x01 as "1", 0x00 as "0", 0x0a as "a" ... (Integer.toHexString)
ABC_FILE_HASH = "ba7816bf8f1cfea414140de5dae2223b0361a396177a9cb410ff61f2015ad"

CREDENTIAL = UpstreamCredential("h53", SYSTEM, SECRET, frozenset({SYSTEM}))


def settings(endpoint: str, *credentials: UpstreamCredential, **knobs: Any) -> UpstreamSettings:
    return UpstreamSettings(
        "vdxp-test", "vdxp", endpoint, credentials or (CREDENTIAL,), **{"deadline_s": 2.0, **knobs}
    )


Connect = Callable[..., VdxpClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """A client per call, each closed at the end: (endpoint, credential?, **settings)."""
    async with AsyncExitStack() as stack:

        def make(
            endpoint: str, credential: UpstreamCredential = CREDENTIAL, **knobs: Any
        ) -> VdxpClient:
            client = VdxpClient(
                settings(endpoint, credential, **knobs), credential, clock=lambda: AT
            )
            stack.push_async_callback(client.close)
            return client

        yield make


# --- a fake axis that records what it is sent ------------------------------------------------


@dataclass
class Seen:
    call: str
    headers: dict[str, str]
    body: bytes = b""
    parts: list[tuple[str | None, str | None, bytes]] = field(default_factory=list)


Answer = Callable[[str], Awaitable[web.StreamResponse]]


def ok(**fields: Any) -> Answer:
    async def answer(call: str) -> web.StreamResponse:
        return web.json_response(xroad.ok(**fields))

    return answer


def raw(body: bytes | str, status: int = 200, content_type: str = "application/json") -> Answer:
    async def answer(call: str) -> web.StreamResponse:
        data = body.encode() if isinstance(body, str) else body
        return web.Response(body=data, status=status, content_type=content_type)

    return answer


@dataclass
class FakeAxis:
    url: str
    seen: list[Seen]
    answer: Answer

    def last(self) -> Seen:
        return self.seen[-1]


@pytest.fixture
async def axis() -> AsyncIterator[FakeAxis]:
    fake = FakeAxis("", [], ok(data=[]))

    async def handle(request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.match_info["call"],
            {k.decode("latin-1"): v.decode() for k, v in request.raw_headers},
        )
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                assert isinstance(part, BodyPartReader)
                seen.parts.append((part.name, part.filename, bytes(await part.read())))
        else:
            seen.body = await request.read()
        fake.seen.append(seen)
        return await fake.answer(seen.call)

    app = web.Application()
    app.router.add_post("/vdxp/{call}", handle)
    async with TestServer(app) as server:
        fake.url = str(server.make_url("/vdxp"))
        yield fake


def xroad_of(seen: Seen) -> dict[str, str]:
    return {k: v for k, v in seen.headers.items() if k.lower().startswith("xroadvnpt-")}


# --- 1. the protocol's fixed vectors ------------------------------------------------------------


def test_the_protocol_vectors() -> None:
    fields = {"systemid": SYSTEM, "timestamp": STAMP, "servicetype": "eDoc", "messagetype": "edoc"}
    headers = xroad.signed_headers(SECRET, fields)
    assert headers["XroadVnpt-sign-header"] == SIGN_HEADER
    assert headers["XroadVnpt-hash-header"] == HASH_HEADER
    assert xroad.file_hash(b"abc") == ABC_FILE_HASH
    assert xroad.format_timestamp(AT) == STAMP


async def test_a_call_carries_exactly_the_sdks_signed_headers(
    axis: FakeAxis, connect: Connect
) -> None:
    assert await connect(axis.url).pending("edoc") == []
    seen = axis.last()
    assert seen.call == "getReceivedEdocList"
    assert xroad_of(seen) == {
        "XroadVnpt-systemid": SYSTEM,
        "XroadVnpt-timestamp": STAMP,
        "XroadVnpt-servicetype": "eDoc",
        "XroadVnpt-messagetype": "edoc",
        "XroadVnpt-sign-header-key": "systemid;timestamp;servicetype;messagetype",
        "XroadVnpt-sign-header": SIGN_HEADER,
        "XroadVnpt-hash-header": HASH_HEADER,
        "XroadVnpt-version": "3.0.201608",
    }
    assert seen.headers["User-Agent"] == "JAVASDKAgent/1.0.0 XRoad/VPCP"
    assert seen.headers["Content-Type"] == "application/json"
    assert json.loads(seen.body) == {"servicetype": "eDoc", "messagetype": "edoc"}


async def test_a_send_is_one_file_doc_part_under_its_signed_fields(
    axis: FakeAxis, connect: Connect
) -> None:
    axis.answer = ok(DocId="5bebcfeff858e3e0cc154762")
    client = connect(axis.url)
    got = await client.send(b"abc", kind="edoc", sender=SYSTEM, recipients=[G14, H41])
    assert got == "5bebcfeff858e3e0cc154762"
    seen = axis.last()
    signed = json.loads(xroad_of(seen)["XroadVnpt-sign-header"])
    assert signed == {
        "XroadVnpt-systemid": SYSTEM,
        "XroadVnpt-timestamp": STAMP,
        "XroadVnpt-servicetype": "eDoc",
        "XroadVnpt-messagetype": "edoc",
        "XroadVnpt-from": SYSTEM,
        "XroadVnpt-to": f'["{G14}","{H41}"]',
        "XroadVnpt-hash-file": ABC_FILE_HASH,
    }
    assert {k: v for k, v in xroad_of(seen).items() if k in signed} == signed
    ((name, filename, data),) = seen.parts
    assert (name, data) == ("file_doc", b"abc")
    assert filename is not None
    assert filename.endswith(".edxml")

    # a status names no recipients; each call is signed afresh, no field left over
    await client.send(b"abc", kind="status", sender=SYSTEM, recipients=[G14])
    assert "XroadVnpt-to" not in xroad_of(axis.last())
    axis.answer = ok()
    await client.confirm("5bebcfeff858e3e0cc154762", ok=False, reason="Sai mẫu\r\nX-Evil: 1")
    signed = json.loads(xroad_of(axis.last())["XroadVnpt-sign-header"])
    assert list(signed) == [
        "XroadVnpt-systemid",
        "XroadVnpt-timestamp",
        "XroadVnpt-docId",
        "XroadVnpt-status",
        "XroadVnpt-description",
    ]
    assert signed["XroadVnpt-status"] == "fail"
    assert signed["XroadVnpt-description"] == "Sai m\\u1eabu\\r\\nX-Evil: 1"
    assert "X-Evil" not in axis.last().headers


# --- 2. against our own SDK facade ----------------------------------------------------------------


def credential_of(name: str) -> UpstreamCredential:
    configured = facade.CLIENTS[name]
    assert configured.systemid is not None
    assert configured.hmac_secret is not None
    organs = configured.credential.organs or frozenset()
    return UpstreamCredential(name, configured.systemid, configured.hmac_secret, organs)


def endpoint(sdk: facade.Sdk) -> str:
    return str(sdk.http.make_url("/vdxp"))


async def test_a_round_trip_through_our_sdk_facade(
    faces: facade.Faces, connect: Connect, pki: DevPki
) -> None:
    commune = connect(endpoint(faces.commune), credential_of("commune"))
    ministry = connect(endpoint(faces.ministry), credential_of("ministry"))
    data = document(pki, COMMUNE, G14, H41, 140)

    doc_id = await commune.send(data, kind="edoc", sender=COMMUNE, recipients=[G14, H41])
    assert await faces.tree.wait(G14) == [doc_id]
    assert await ministry.pending("edoc") == [PendingItem(doc_id, "edoc", COMMUNE, G14)]
    assert await ministry.pending("status") == []
    assert await ministry.fetch(doc_id) == data

    await ministry.confirm(doc_id, ok=False, reason="chữ ký không hợp lệ")  # stays pending
    assert [item.doc_id for item in await ministry.pending("edoc")] == [doc_id]
    await ministry.confirm(doc_id, ok=True)
    assert await ministry.pending("edoc") == []

    agencies = {agency.organ_id: agency for agency in await ministry.agencies()}
    assert agencies[H41].old_codes == (OLD_H41,)
    assert agencies[G14] == UpstreamAgency(G14, "", (), "central", "")
    assert agencies[COMMUNE].parent == "commune-21-31-h53"


async def test_our_facades_refusals_as_the_client_raises_them(
    faces: facade.Faces, connect: Connect, pki: DevPki
) -> None:
    commune = connect(endpoint(faces.commune), credential_of("commune"))
    tampered = document(pki, COMMUNE, G14, H41, 141).replace(b"UBND-VP", b"UBND-XX")
    with pytest.raises(UpstreamRefused, match=r"sendEdoc: \[422\] \[signature\.invalid\]"):
        await commune.send(tampered, kind="edoc", sender=COMMUNE, recipients=[G14, H41])
    with pytest.raises(UpstreamRefused, match=r"getEdoc: \[404\] \[mailbox\.not_found\]"):
        await commune.fetch("0123456789abcdef01234567")
    # sending as an agency outside the system's set: HTTP 403
    with pytest.raises(UpstreamUnauthorised, match=r"agency\.not_yours"):
        await commune.send(b"<x/>", kind="edoc", sender=G14, recipients=[H41])
    wrong = replace(credential_of("commune"), secret=b"not-the-secret-of-the-commune")
    with pytest.raises(UpstreamUnauthorised, match=r"sdk\.signature_invalid"):
        await connect(endpoint(faces.commune), wrong).pending("edoc")


# --- 3. an axis that is down, slow, garbled or refusing -------------------------------------


async def test_an_axis_that_is_down_is_unavailable(connect: Connect) -> None:
    client = connect(f"http://127.0.0.1:{unused_port()}/vdxp")
    with pytest.raises(
        UpstreamUnavailable, match=r"getAgenciesList at http://127\.0\.0\.1:\d+/vdxp: Client"
    ):
        await client.agencies()


async def hang(call: str) -> web.StreamResponse:
    await asyncio.Event().wait()  # until the server shuts down
    raise AssertionError("unreachable")


async def test_an_axis_slower_than_the_deadline_is_unavailable(
    axis: FakeAxis, connect: Connect
) -> None:
    client = connect(axis.url, deadline_s=0.2)
    axis.answer = hang
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailable, match=r"no answer within 0\.2 s"):
        await client.pending("edoc")
    assert time.monotonic() - started < 1.0


async def test_the_deadline_covers_an_answer_that_stalls_halfway(connect: Connect) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(headers={"Content-Type": "application/json"})
        await reply.prepare(request)
        await reply.write(b'{"status":"OK","ErrorCode":"0","data":[')
        await asyncio.Event().wait()
        return reply

    app = web.Application()
    app.router.add_post("/vdxp/{call}", stall)
    async with TestServer(app) as server:
        client = connect(str(server.make_url("/vdxp")), deadline_s=0.2)
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            await client.agencies()
        assert time.monotonic() - started < 1.0


async def send(client: VdxpClient) -> object:
    return await client.send(b"abc", kind="edoc", sender=SYSTEM, recipients=[G14])


async def pending(client: VdxpClient) -> object:
    return await client.pending("edoc")


async def fetch(client: VdxpClient) -> object:
    return await client.fetch("5bebcfeff858e3e0cc154762")


async def agencies(client: VdxpClient) -> object:
    return await client.agencies()


GARBLED = {
    "an HTML page": (pending, raw("<html><body>Gateway</body></html>", content_type="text/html")),
    "a JSON array": (agencies, raw("[]")),
    "no ErrorCode": (pending, raw('{"status":"OK","data":[]}')),
    "data not a list": (pending, raw(json.dumps(xroad.ok(data={"docId": "x"})))),
    "no DocId": (send, ok()),
    "a DocId not a string": (send, ok(DocId=12345)),
    "data not base64": (fetch, ok(data="PD94bWw*")),
    "data missing": (fetch, ok()),
    "a success on HTTP 400": (pending, raw(json.dumps(xroad.ok(data=[])), status=400)),
    "a redirect": (pending, raw(b"", status=302)),
}


@pytest.mark.parametrize(("call", "answer"), GARBLED.values(), ids=GARBLED.keys())
async def test_an_answer_outside_the_protocol_is_garbled(
    axis: FakeAxis,
    connect: Connect,
    call: Callable[[VdxpClient], Awaitable[object]],
    answer: Answer,
) -> None:
    axis.answer = answer
    with pytest.raises(UpstreamGarbled, match="the answer begins b'") as caught:
        await call(connect(axis.url))
    assert caught.value.message.startswith(f"{axis.last().call} at {axis.url}: ")


async def test_an_answer_over_its_cap_is_garbled_before_it_is_held(
    axis: FakeAxis, connect: Connect
) -> None:
    client = connect(axis.url, max_bytes=3000)
    big = base64.b64encode(b"x" * 3003).decode()
    axis.answer = ok(data=big)  # within what is read, over what may be decoded
    with pytest.raises(UpstreamGarbled, match="over the 3000-byte cap"):
        await client.fetch("5bebcfeff858e3e0cc154762")
    axis.answer = ok(data=big * 100)  # refused from its Content-Length
    with pytest.raises(UpstreamGarbled, match="bytes, over"):
        await client.fetch("5bebcfeff858e3e0cc154762")

    async def streamed(call: str) -> web.StreamResponse:  # no Content-Length: counted as read
        return web.Response(body=chunks(), content_type="application/json")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"status":"OK","ErrorCode":"0","data":"'
        for _ in range(100):
            yield b"A" * 4096

    axis.answer = streamed
    with pytest.raises(UpstreamGarbled, match="the answer is over"):
        await client.fetch("5bebcfeff858e3e0cc154762")
    # and a docId that could not travel back as a header is never sent
    with pytest.raises(UpstreamGarbled, match="not a transport id"):
        await client.confirm("abc\r\nX-Evil: 1", ok=True)


async def test_http_statuses_and_sdk_refusals(axis: FakeAxis, connect: Connect) -> None:
    client = connect(axis.url)
    axis.answer = raw("busy", status=503, content_type="text/plain")
    with pytest.raises(UpstreamUnavailable, match="HTTP 503"):
        await client.pending("status")
    axis.answer = raw("who are you", status=401, content_type="text/plain")
    with pytest.raises(UpstreamUnauthorised, match="HTTP 401"):
        await client.pending("status")
    axis.answer = raw(json.dumps(xroad.fail("x", "y", "401")))  # its auth error on HTTP 200
    with pytest.raises(UpstreamUnauthorised):
        await client.pending("status")
    axis.answer = raw(json.dumps({"status": "FAIL", "ErrorCode": "18", "ErrorDesc": "Sai mã"}))
    with pytest.raises(UpstreamRefused) as caught:
        await client.confirm("5bebcfeff858e3e0cc154762", ok=True)
    assert caught.value.message == "updateStatus: [18] Sai mã"
    axis.answer = raw(json.dumps(xroad.fail("package.too_large", "big", "413")), status=413)
    with pytest.raises(UpstreamRefused, match=r"\[413\]"):
        await send(client)


async def test_list_rows_that_are_malformed_are_skipped(axis: FakeAxis, connect: Connect) -> None:
    client = connect(axis.url)
    axis.answer = ok(
        data=[
            {"docId": "a1", "messageType": "status", "from": G14, "to": SYSTEM},
            {"serviceType": "eDoc"},  # no docId
            {"docId": 7},
            {"docId": "bad id"},
            "not a row",
            {"docId": "b2"},
        ]
    )
    assert await client.pending("edoc") == [
        PendingItem("a1", "status", G14, SYSTEM),
        PendingItem("b2", "edoc"),
    ]
    axis.answer = ok(
        data=[
            {"id": 101, "code": G14, "pid": 1, "name": "Bộ", "oldCode": "a, b,,"},
            {"id": 102, "name": "no code"},
            {"code": H41, "oldCode": ["000.00.00.H99", 5]},
            {"code": COMMUNE, "oldCode": None, "mail": "vp@example.vn"},
            {"name": "neither code nor id"},
        ]
    )
    assert await client.agencies() == [
        UpstreamAgency(G14, "Bộ", ("a", "b"), "1"),
        UpstreamAgency("102", "no code"),
        UpstreamAgency(H41, "", ("000.00.00.H99", "5")),
        UpstreamAgency(COMMUNE, mail="vp@example.vn"),
    ]
