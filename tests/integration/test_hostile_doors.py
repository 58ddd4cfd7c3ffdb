"""Hostile input at every door of one running node (its own process, the real RabbitMQ):
the REST API, the SDK facade and the AMQP face. Each input gets its specific error, the
node keeps serving others meanwhile, and a legitimate package sent after it all is
delivered once. The list of kinds and codes is docs/reliability.md's."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import aiohttp
import pytest

from adapters.client import NodeClient
from tests.integration.broker import AMQP_URL
from tests.integration.doors import (
    INVALID,
    Door,
    close_door,
    multipart,
    open_door,
    promised,
    sdk_headers,
    sdk_send_request,
    wait_open,
)
from tests.integration.harness import COMMUNE, G22, H53

pytestmark = pytest.mark.integration

FLOOD = 40  # submissions at once from the flooding login (its rate: 5 a second, bursts of 10)


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    opened = open_door(tmp_path_factory.mktemp("door"))
    try:
        asyncio.run(wait_open(opened))
        yield opened
    finally:
        asyncio.run(close_door(opened))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


def code_of(body: dict[str, object]) -> str:
    """Our code: a problem's ``code``, or the front of an SDK answer's ErrorDesc."""
    if "code" in body:
        return str(body["code"])
    return str(body.get("ErrorDesc", "")).partition("]")[0].lstrip("[")


def problem_codes(body: dict[str, object]) -> set[str]:
    found = body.get("problems") or []
    assert isinstance(found, list)
    return {str(p["code"]) for p in found}


async def raw_exchange(port: int, chunks: list[bytes], pause_s: float = 0.0) -> bytes:
    """Send ``chunks`` (pausing between them) on a raw connection; all it answers until
    the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for chunk in chunks:
            if reader.at_eof():  # the server hung up: dribble no more
                break
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(pause_s)
        return await reader.read()
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def delivered(door: Door, organ: str, message_id: str) -> list[str]:
    """The agency's mailbox, once ``message_id`` is in it (a deadline, not a guess)."""
    async with asyncio.timeout(30):
        while message_id not in (found := await door.node.mailbox(organ)):  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # another process's store: polled
    return found


# --- the admission corpus, at REST and at the SDK facade --------------------------------


async def test_every_corpus_file_is_refused_with_its_code_at_rest_and_at_the_sdk(
    door: Door, http: aiohttp.ClientSession
) -> None:
    seen: dict[str, tuple[object, ...]] = {}
    for path in INVALID:
        expected = promised(path)
        status, body = await door.rest_submit(http, door.corpus(path, H53))
        rest = (status, code_of(body), expected in problem_codes(body) | {code_of(body)})
        sdk_status, sdk_body = await door.sdk_send(http, door.corpus(path, COMMUNE))
        sdk = (sdk_status, sdk_body.get("status"), code_of(sdk_body))
        seen[path.name] = (*rest, *sdk)
    for name, (status, code, named, sdk_status, sdk_ok, sdk_code) in seen.items():
        expected = promised(Path(name))
        family = "contract.invalid" if expected.startswith("contract.") else expected
        assert (status, named) == (413 if expected == "package.too_large" else 422, True), name
        assert code == family, name
        # the SDK reads a package's refusal as JSON on 200; its ErrorDesc leads with the code
        assert (sdk_status, sdk_ok, sdk_code) == (200, "FAIL", family), name
    assert len(seen) == len(INVALID) >= 30


# --- protocol abuse at the HTTP doors ----------------------------------------------------


async def test_slowloris_is_cut_off_while_others_are_served(
    door: Door, http: aiohttp.ClientSession
) -> None:
    request = b"POST /v1/packages HTTP/1.1\r\nHost: lienthong\r\nX-Slow: " + b"a" * 40
    dribbled = [request[i : i + 1] for i in range(len(request))]
    head = (
        b"POST /v1/packages HTTP/1.1\r\nHost: lienthong\r\nAuthorization: Bearer "
        + door.bearer("h53")["Authorization"].split()[1].encode()
        + b"\r\nContent-Type: application/xml\r\nContent-Length: 100000\r\n\r\n<edXML"
    )
    sdk_headers_, body = sdk_send_request(door.package(COMMUNE, [G22]))
    sdk_head = (
        b"POST /vdxp/sendEdoc HTTP/1.1\r\nHost: lienthong\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in sdk_headers_.items()).encode()
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:100]
    )
    async with asyncio.timeout(30):  # each is closed by the node, not by this deadline
        slow = [
            asyncio.create_task(raw_exchange(door.port, dribbled, pause_s=0.1)),
            asyncio.create_task(raw_exchange(door.port, [head])),  # a body that never ends
            asyncio.create_task(raw_exchange(door.port, [sdk_head])),
        ]
        await asyncio.sleep(0.5)
        # meanwhile an agency is served
        status, body_ = await door.rest_submit(http, door.package(H53, [G22]))
        assert status == 201, body_
        assert not any(task.done() for task in slow)
        dribble, rest_body, sdk_body = await asyncio.gather(*slow)
    assert dribble == b""  # closed mid-headers: no request to answer
    assert rest_body.startswith(b"HTTP/1.1 408 ")
    assert b'"code": "http.request_timeout"' in rest_body
    assert sdk_body.startswith(b"HTTP/1.1 408 ")
    assert b"[http.request_timeout]" in sdk_body


async def test_oversize_and_too_many_headers_are_a_bad_request(door: Door) -> None:
    long = b"GET /v1/directory HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"
    answer = await raw_exchange(door.port, [long])
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer[:200]
    assert b"Got more than 8190 bytes" in answer  # aiohttp's words: the limit it enforces
    many = b"GET /v1/directory HTTP/1.1\r\nHost: x\r\n"
    many += b"".join(b"X-H%d: v\r\n" % n for n in range(200)) + b"\r\n"
    answer = await raw_exchange(door.port, [many])
    assert answer.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 ")), answer[:200]
    assert b"too many headers" in answer.lower()


async def test_truncated_multipart_and_invalid_utf8_get_their_codes(
    door: Door, http: aiohttp.ClientSession
) -> None:
    data = door.package(COMMUNE, [G22])
    headers, body = sdk_send_request(data)

    async def sdk(body: bytes, headers: dict[str, str] = headers) -> tuple[int, str]:
        async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=headers) as got:
            return got.status, code_of(await got.json(content_type=None))

    assert await sdk(body[: len(body) // 2]) == (400, "sdk.request_invalid")  # truncated
    assert await sdk(multipart(data, name=b"file_\xff\xfe")) == (400, "sdk.request_invalid")
    # a JSON body that is not UTF-8
    listing = sdk_headers({"servicetype": "eDoc", "messagetype": "edoc"})
    listing["Content-Type"] = "application/json"
    async with http.post(
        f"{door.base}/vdxp/getReceivedEdocList",
        data=b'{"servicetype": "\xff\xfe"}',
        headers=listing,
    ) as got:
        assert (got.status, code_of(await got.json())) == (400, "sdk.request_invalid")
    # a package that is not UTF-8 at REST
    status, answer = await door.rest_submit(http, b"<?xml version='1.0'?><edXML>\xff\xfe</edXML>")
    assert (status, code_of(answer)) == (422, "xml.malformed")
    # headers that are not UTF-8: a token, an agency to act as, an XroadVnpt- field
    raw = b"GET /v1/directory HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    raw += b"Authorization: Bearer \xff\xfe\r\n\r\n"
    answer_ = await raw_exchange(door.port, [raw])
    assert answer_.startswith(b"HTTP/1.1 401 ")
    assert b"auth.unauthenticated" in answer_
    token = door.bearer("h53")["Authorization"].encode()
    raw = (
        b"POST /v1/packages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
        + token
        + b"\r\n"
        b"Lienthong-As: 000.00.00.\xff\xfe\r\nContent-Length: 4\r\n\r\n<x/>"
    )
    answer_ = await raw_exchange(door.port, [raw])
    assert answer_.startswith(b"HTTP/1.1 403 ")
    assert b"agency.not_yours" in answer_
    signed = sdk_headers({"servicetype": "eDoc", "messagetype": "edoc"})
    raw = (
        b"POST /vdxp/getReceivedEdocList HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in signed.items()).encode()
        + b"XroadVnpt-messagetype: \xff\xfe\r\nContent-Length: 0\r\n\r\n"
    )
    answer_ = await raw_exchange(door.port, [raw])
    assert answer_.startswith(b"HTTP/1.1 401 ")
    assert b"sdk.header_mismatch" in answer_


async def test_a_hundred_thousand_recipients_are_refused_before_the_schema_runs(
    door: Door, http: aiohttp.ClientSession
) -> None:
    data = door.package(H53, [G22], extra_to=100_000)
    status, body = await door.rest_submit(http, io.BytesIO(data))  # type: ignore[arg-type]
    assert (status, code_of(body)) == (422, "contract.invalid")
    assert problem_codes(body) == {"contract.too_many_recipients"}
    data = door.package(COMMUNE, [G22], extra_to=100_000)
    headers, form = sdk_send_request(data)
    async with http.post(
        f"{door.base}/vdxp/sendEdoc", data=io.BytesIO(form), headers=headers
    ) as got:
        answer = await got.json(content_type=None)
    assert (got.status, code_of(answer)) == (200, "contract.invalid")
    assert "20000" in str(answer["ErrorDesc"])


async def test_a_tampered_or_replayed_sdk_call_gets_its_code(
    door: Door, http: aiohttp.ClientSession
) -> None:
    data = door.package(COMMUNE, [G22])
    headers, body = sdk_send_request(data)
    tampered = dict(headers)
    tampered["XroadVnpt-hash-header"] = "0" * 64
    async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=tampered) as got:
        assert (got.status, code_of(await got.json())) == (401, "sdk.signature_invalid")
    other, _ = sdk_send_request(data, secret=b"not-the-secret-0123456789")
    async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=other) as got:
        assert (got.status, code_of(await got.json())) == (401, "sdk.signature_invalid")
    bad_stamp, _ = sdk_send_request(data, timestamp="yesterday")
    async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=bad_stamp) as got:
        assert (got.status, code_of(await got.json())) == (401, "sdk.timestamp_invalid")
    # the SDK keeps one timestamp for its process's life: an old one is not refused, and a
    # replayed send answers the original DocId and delivers nothing new
    old, _ = sdk_send_request(data, timestamp="01012001T000000+0000")
    async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=old) as got:
        first = await got.json()
    async with http.post(f"{door.base}/vdxp/sendEdoc", data=body, headers=old) as got:
        again = await got.json()
    assert first["status"] == again["status"] == "OK"
    assert again["DocId"] == first["DocId"]
    assert (await delivered(door, G22, first["DocId"])).count(first["DocId"]) == 1


async def test_tokens_missing_wrong_or_for_another_agency_are_refused(
    door: Door, http: aiohttp.ClientSession
) -> None:
    data = door.package(H53, [G22])

    async def post(headers: dict[str, str]) -> tuple[int, str]:
        async with http.post(f"{door.base}/v1/packages", data=data, headers=headers) as got:
            return got.status, code_of(await got.json(content_type=None))

    assert await post({}) == (401, "auth.unauthenticated")
    assert await post({"Authorization": "Bearer not-a-token"}) == (401, "auth.unauthenticated")
    assert await post({"Authorization": "Basic Z3Vlc3Q6Z3Vlc3Q="}) == (401, "auth.unauthenticated")
    # G22's token: a package from H53, whether or not it says it acts as H53
    assert await post(door.bearer("g22")) == (403, "submitter.not_sender")
    assert await post({**door.bearer("g22"), "Lienthong-As": H53}) == (403, "agency.not_yours")


# --- abuse at the AMQP face ---------------------------------------------------------------


async def test_a_spoofed_user_id_is_refused_by_the_broker(door: Door) -> None:
    connection = await aio_pika.connect(door.flood_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        own = f"lienthong.{door.node.node_id}.gate.{door.flood_login}"  # the one it may use
        gate = await channel.get_exchange(own, ensure=False)
        with pytest.raises(aio_pika.exceptions.AMQPError, match="user_id"):
            await gate.publish(
                aio_pika.Message(door.package(H53, [G22]), user_id="guest"),
                routing_key=f"lienthong.{door.node.node_id}.inbound",
                timeout=10,
            )


async def test_an_oversize_message_is_refused_with_its_code(door: Door) -> None:
    big = b"<edXML>" + b"a" * (9 * 1024 * 1024) + b"</edXML>"  # past the 8 MiB inline cap
    async with NodeClient(AMQP_URL, door.node.node_id, timeout_s=30) as client:
        (answer,) = await client.submit([big], as_organ=H53)
    assert (answer.outcome, answer.code) == ("refused", "package.too_large")


async def test_a_flood_from_one_login_is_rate_limited_while_others_get_through(
    door: Door,
) -> None:
    junk = [f"<flood n='{n}' id='{uuid.uuid4()}'/>".encode() for n in range(FLOOD)]
    legit = door.package(H53, [G22])
    async with (
        NodeClient(door.flood_url, door.node.node_id, timeout_s=30) as flooder,
        NodeClient(AMQP_URL, door.node.node_id, timeout_s=30) as agency,
    ):
        flood = asyncio.create_task(flooder.submit(junk, as_organ=G22, wait_for_rate=False))
        (own,) = await agency.submit([legit], as_organ=H53)
        answers = await flood
    assert own.outcome == "accepted", own
    codes = [a.code for a in answers]
    assert {a.outcome for a in answers} == {"refused"}
    # a burst of twice the rate is admitted (and refused as junk); the rest is not admitted
    assert codes.count("intake.rate_limited") >= FLOOD - 2 * door.flood_rate - 5
    assert set(codes) <= {"intake.rate_limited", "xml.malformed", "contract.schema"} | {
        c for c in codes if c and c.startswith(("xml.", "contract."))
    }
    assert (await delivered(door, G22, own.message_id)).count(own.message_id) == 1


# --- and after it all ---------------------------------------------------------------------


async def test_after_the_attacks_a_legitimate_package_is_delivered_once(
    door: Door, http: aiohttp.ClientSession
) -> None:
    before = await door.node.mailbox(G22)
    status, body = await door.rest_submit(http, door.package(H53, [G22]))
    assert status == 201, body
    sdk_status, sdk_body = await door.sdk_send(http, door.package(COMMUNE, [G22]))
    assert (sdk_status, sdk_body["status"]) == (200, "OK"), sdk_body
    await delivered(door, G22, body["message_id"])
    after = await delivered(door, G22, str(sdk_body["DocId"]))
    assert set(before) <= set(after)
    assert after.count(body["message_id"]) == after.count(sdk_body["DocId"]) == 1
    assert len(after) == len(set(after))  # no mailbox holds a package twice
    assert door.node.processes[0].poll() is None  # the node never fell over
    log = (door.node.folder / "node.log").read_text(errors="replace")
    # aiohttp logs each request it could not parse (with its stack); nothing else failed
    for failure in ("intake.crashed", "Unhandled exception", "Encode", "Decode"):
        assert failure not in log
