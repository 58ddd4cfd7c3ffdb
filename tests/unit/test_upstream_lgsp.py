"""The two provincial-axis clients against their fakes (tests/fake_lgsp.py): what each
sends, lists, fetches, confirms and maps, and what each raises when the axis is down, slow,
garbled, refuses our credentials or refuses the call."""

from __future__ import annotations

import base64
import hashlib
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.upstream_bkav import BkavClient
from adapters.upstream_langson import LangsonClient
from exchange.errors import (
    ConfigurationError,
    LienthongError,
    PackageTooLarge,
    UpstreamGarbled,
    UpstreamRefused,
    UpstreamUnauthorised,
    UpstreamUnavailable,
)
from exchange.upstream import PendingItem, UpstreamAgency, UpstreamCredential, UpstreamSettings
from tests.fake_lgsp import FakeBkav, FakeLangson

NS = b'xmlns:edXML="http://www.mic.gov.vn/TBT/QCVN_102_2016"'
PACKAGE = b"<edXML:Envelope " + NS + "><!-- Công văn số 125 --></edXML:Envelope>".encode()
STATUS = b"<edXML:Envelope " + NS + b"><edXML:Status/></edXML:Envelope>"
OURS = "000.00.00.H53"
SENDER = "000.00.12.H53"
BKAV_TOKEN = "bkav-token-bi-mat"
LS = {"username": "van-thu", "password": "mat-khau-bi-mat", "application_code": "QLVB"}
LS_SECRET = "khoa-he-thong-bi-mat"
SECRETS = (BKAV_TOKEN, LS["password"], LS_SECRET, "jwt-")
AGENCIES: list[dict[str, Any]] = [
    {"organId": "000.01.53.H53", "organName": "Sở Nội vụ", "email": "snv@example.vn"},
    {"code": "000.02.53.H53", "name": "Sở Tài chính", "oldCode": "000.02.31.H41, 000.03.31.H41"},
    {
        "id": "000.03.53.H53",
        "name": "UBND xã",
        "oldCode": ["000.07.31.H41"],
        "pid": "000.01.53.H53",
    },
    {"name": "no id at all"},
]


def settings(
    url: str, protocol: str, credential: UpstreamCredential, **more: float
) -> UpstreamSettings:
    return UpstreamSettings(
        name="tinh",
        protocol=protocol,
        endpoint=url,
        credentials=(credential,),
        deadline_s=float(more.get("deadline_s", 5.0)),
        max_bytes=int(more.get("max_bytes", 1024 * 1024)),
    )


def bkav_credential(token: str = BKAV_TOKEN) -> UpstreamCredential:
    return UpstreamCredential(name="so-noi-vu", systemid=OURS, secret=token.encode())


def langson_credential(**change: str) -> UpstreamCredential:
    fields = {**LS, "systemid": OURS, "secret": LS_SECRET, **change}
    return UpstreamCredential(
        name="so-noi-vu",
        systemid=fields["systemid"],
        secret=fields["secret"].encode(),
        username=fields["username"],
        password=fields["password"],
        application_code=fields["application_code"],
    )


def client_for(protocol: str, url: str, **more: float) -> BkavClient | LangsonClient:
    if protocol == "bkav":
        credential = bkav_credential()
        return BkavClient(settings(url, protocol, credential, **more), credential)
    credential = langson_credential()
    return LangsonClient(settings(url, protocol, credential, **more), credential)


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def bkav() -> AsyncIterator[FakeBkav]:
    async with FakeBkav(token=BKAV_TOKEN) as fake:
        yield fake


@pytest.fixture
async def bkav_client(bkav: FakeBkav) -> AsyncIterator[BkavClient]:
    client = BkavClient(settings(bkav.url, "bkav", bkav_credential()), bkav_credential())
    yield client
    await client.close()


@pytest.fixture
async def langson() -> AsyncIterator[FakeLangson]:
    async with FakeLangson(
        username=LS["username"],
        password=LS["password"],
        application_code=LS["application_code"],
        systemid=OURS,
        secret=LS_SECRET,
    ) as fake:
        yield fake


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 10, 1, 0, tzinfo=UTC))  # 08:00 in Hà Nội


@pytest.fixture
async def langson_client(langson: FakeLangson, clock: Clock) -> AsyncIterator[LangsonClient]:
    credential = langson_credential()
    client = LangsonClient(settings(langson.url, "langson", credential), credential, clock=clock)
    yield client
    await client.close()


def assert_no_secrets(logs: Sequence[Mapping[str, object]]) -> None:
    text = repr(logs)
    for secret in SECRETS:
        assert secret not in text


# --- Bkav EdocService --------------------------------------------------------------------


@pytest.mark.parametrize("doc_id_field", ["docId", "DocId", "data.docId"])
async def test_bkav_send_hands_over_the_exact_bytes_with_its_headers(
    bkav: FakeBkav, bkav_client: BkavClient, doc_id_field: str
) -> None:
    bkav.doc_id_field = doc_id_field
    doc_id = await bkav_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])
    status_id = await bkav_client.send(STATUS, kind="status", sender=SENDER, recipients=[OURS])
    first, second = bkav.sent
    assert (doc_id, status_id) == (first.doc_id, second.doc_id)
    assert (first.kind, first.data, second.kind, second.data) == ("edoc", PACKAGE, "status", STATUS)
    assert first.headers["organid"] == SENDER
    assert first.headers["authorization"] == BKAV_TOKEN
    assert first.headers["type"] == "EDOC"
    assert first.headers["hash-edoc"] == hashlib.sha256(PACKAGE).hexdigest()
    assert first.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("form", ["pairs", "wrapped", "ids"])
async def test_bkav_pending_lists_each_kind_for_our_organ(
    bkav: FakeBkav, bkav_client: BkavClient, form: str
) -> None:
    bkav.pending_form = form
    bkav.put_pending("edoc", "41", PACKAGE, recipient="000.09.53.H53")
    bkav.put_pending("edoc", "42", PACKAGE)
    bkav.put_pending("status", "41", STATUS)
    edocs = await bkav_client.pending("edoc")
    statuses = await bkav_client.pending("status")
    named = "000.09.53.H53" if form != "ids" else OURS
    assert edocs == [
        PendingItem("41", "edoc", recipient=named),
        PendingItem("42", "edoc", recipient=OURS),
    ]
    assert statuses == [PendingItem("status:41", "status", recipient=OURS)]
    assert bkav.requests[-1][2]["organid"] == OURS


@pytest.mark.parametrize("form", ["json", "raw"])
async def test_bkav_fetch_returns_the_exact_bytes_of_a_document_or_a_status(
    bkav: FakeBkav, bkav_client: BkavClient, form: str
) -> None:
    bkav.document_form = form
    bkav.put_pending("edoc", "41", PACKAGE)
    bkav.put_pending("status", "41", STATUS)  # numbered apart: the same number
    [document] = await bkav_client.pending("edoc")
    [status] = await bkav_client.pending("status")
    assert await bkav_client.fetch(document.doc_id) == PACKAGE
    assert await bkav_client.fetch(status.doc_id) == STATUS


async def test_bkav_confirm_takes_the_item_off_the_list_and_a_refusal_too(
    bkav: FakeBkav, bkav_client: BkavClient
) -> None:
    bkav.put_pending("edoc", "41", PACKAGE)
    bkav.put_pending("edoc", "42", PACKAGE)
    with capture_logs() as logs:
        await bkav_client.confirm("41", ok=True)
        await bkav_client.confirm("42", ok=False, reason="signature.invalid: bad digest")
    assert [c.doc_id for c in bkav.confirmed] == ["41", "42"]
    assert await bkav_client.pending("edoc") == []
    [refused] = [e for e in logs if e["event"] == "bridge.refused_confirmed"]
    assert refused["doc_id"] == "42"
    assert refused["reason"] == "signature.invalid: bad digest"
    assert refused["upstream"] == "tinh"
    assert_no_secrets(logs)


async def test_bkav_agencies_are_mapped_whatever_their_fields_are_called(
    bkav: FakeBkav, bkav_client: BkavClient
) -> None:
    bkav.agencies = AGENCIES
    with capture_logs() as logs:
        agencies = await bkav_client.agencies()
    assert agencies == [
        UpstreamAgency("000.01.53.H53", "Sở Nội vụ", mail="snv@example.vn"),
        UpstreamAgency("000.02.53.H53", "Sở Tài chính", ("000.02.31.H41", "000.03.31.H41")),
        UpstreamAgency("000.03.53.H53", "UBND xã", ("000.07.31.H41",), parent="000.01.53.H53"),
    ]
    assert [e["skipped"] for e in logs if e["event"] == "upstream.agencies_without_id"] == [1]
    method, path, _ = bkav.requests[-1]
    assert (method, path) == ("GET", "/EdocService/getOrganizations")


async def test_bkav_a_wrong_token_is_unauthorised(bkav: FakeBkav) -> None:
    credential = bkav_credential("not-the-token")
    client = BkavClient(settings(bkav.url, "bkav", credential), credential)
    try:
        with pytest.raises(UpstreamUnauthorised, match=r"HTTP 401.*Token is invalid"):
            await client.pending("edoc")
    finally:
        await client.close()


async def test_bkav_an_unknown_document_is_refused_and_a_web_page_is_garbled(
    bkav: FakeBkav, bkav_client: BkavClient
) -> None:
    bkav.put_pending("edoc", "41", PACKAGE)
    with pytest.raises(UpstreamRefused, match="GetDocument: Get Document From Database"):
        await bkav_client.fetch("999")
    bkav.document_form = "html"
    with pytest.raises(UpstreamGarbled, match="a web page instead of the package"):
        await bkav_client.fetch("41")


# --- Lạng Sơn LGSP -------------------------------------------------------------------------


async def test_langson_send_logs_in_and_hands_over_the_exact_bytes(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    doc_id = await langson_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])
    status_id = await langson_client.send(STATUS, kind="status", sender=SENDER, recipients=[OURS])
    first, second = langson.sent
    assert (doc_id, status_id) == (first.doc_id, second.doc_id)
    assert (first.kind, first.data, second.kind, second.data) == ("edoc", PACKAGE, "status", STATUS)
    assert str(first.filename).endswith(".edxml")
    assert first.content_type == "application/xml"
    assert first.headers["authorization"].startswith("Bearer jwt-")
    assert (first.headers["x-systemid"], first.headers["x-secretkey"]) == (OURS, LS_SECRET)
    assert langson.logins == 1


async def test_langson_pending_asks_for_the_window_and_leaves_out_what_we_answered(
    langson: FakeLangson, clock: Clock
) -> None:
    credential = langson_credential()
    client = LangsonClient(
        settings(langson.url, "langson", credential), credential, window_days=3, clock=clock
    )
    clock.now = datetime(2026, 3, 9, 20, 0, tzinfo=UTC)  # already the 10th in Hà Nội
    langson.put_pending("edoc", "a1", PACKAGE, recipient=OURS, sender=SENDER)
    langson.put_pending("edoc", "a2", PACKAGE, recipient=OURS, sender=SENDER)
    langson.put_pending("edoc", "a3", PACKAGE, recipient=OURS, sender=SENDER)
    langson.put_pending("status", "s1", STATUS, recipient=OURS, sender=SENDER)
    try:
        await client.confirm("a1", ok=True)
        await client.confirm("a3", ok=False, reason="contract.invalid")
        langson.items[1].status = "processing"
        assert await client.pending("edoc") == [PendingItem("a2", "edoc", SENDER, OURS)]
        assert await client.pending("status") == [PendingItem("s1", "status", SENDER, OURS)]
    finally:
        await client.close()
    assert langson.list_queries[0] == {
        "messageType": "edoc",
        "fromDate": "2026/03/07",
        "toDate": "2026/03/10",
    }


@pytest.mark.parametrize("form", ["text", "base64", "data"])
@pytest.mark.parametrize("package", [PACKAGE, b"\xef\xbb\xbf\r\n" + PACKAGE], ids=["plain", "bom"])
async def test_langson_fetch_returns_the_exact_bytes_in_each_form(
    langson: FakeLangson, langson_client: LangsonClient, form: str, package: bytes
) -> None:
    langson.edxml_form = form
    langson.put_pending("edoc", "a1", package)
    assert await langson_client.fetch("a1") == package


async def test_langson_answers_without_success_but_with_code_200_are_read_too(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.envelope, langson.edxml_form = "code", "data"
    langson.agencies = AGENCIES[:1]
    langson.put_pending("edoc", "a1", PACKAGE, recipient=OURS, sender=SENDER)
    [item] = await langson_client.pending("edoc")
    assert await langson_client.fetch(item.doc_id) == PACKAGE
    await langson_client.confirm(item.doc_id, ok=True)
    assert await langson_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])
    assert [a.organ_id for a in await langson_client.agencies()] == ["000.01.53.H53"]
    assert await langson_client.pending("edoc") == []


async def test_langson_attachments_beside_the_package_leave_it_as_given(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.put_pending("edoc", "a1", PACKAGE)
    content = base64.b64encode(b"%PDF-1.7").decode()
    langson.attachments = [{"fileName": "cv.pdf", "fileContent": content}]
    with capture_logs() as logs:
        assert await langson_client.fetch("a1") == PACKAGE
    [outside] = [e for e in logs if e["event"] == "upstream.attachments_outside"]
    assert (outside["doc_id"], outside["attachments"]) == ("a1", 1)


async def test_langson_confirm_says_done_or_fail_with_the_reason(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.put_pending("edoc", "a1", PACKAGE)
    langson.put_pending("edoc", "a2", PACKAGE)
    await langson_client.confirm("a1", ok=True)
    await langson_client.confirm("a2", ok=False, reason="signature.invalid: bad digest")
    assert [(c.doc_id, c.status, c.description) for c in langson.confirmed] == [
        ("a1", "done", None),
        ("a2", "fail", "signature.invalid: bad digest"),
    ]


async def test_langson_agencies_are_mapped(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.agencies = AGENCIES
    agencies = await langson_client.agencies()
    assert [a.organ_id for a in agencies] == ["000.01.53.H53", "000.02.53.H53", "000.03.53.H53"]
    assert agencies[1].old_codes == ("000.02.31.H41", "000.03.31.H41")


async def test_langson_logs_in_again_when_the_token_is_refused(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.put_pending("edoc", "a1", PACKAGE)
    with capture_logs() as logs:
        await langson_client.pending("edoc")
        langson.expire_tokens()
        assert await langson_client.fetch("a1") == PACKAGE
        await langson_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])
    assert langson.logins == 2
    assert [e["event"] for e in logs].count("upstream.token_refused") == 1
    assert langson.sent[0].data == PACKAGE
    assert_no_secrets(logs)


async def test_langson_logs_in_again_when_the_token_is_25_minutes_old(
    langson: FakeLangson, langson_client: LangsonClient, clock: Clock
) -> None:
    await langson_client.pending("edoc")
    clock.now += timedelta(minutes=24)
    await langson_client.pending("edoc")
    assert langson.logins == 1
    clock.now += timedelta(minutes=2)
    await langson_client.pending("edoc")
    assert langson.logins == 2
    refused = [r for r in langson.requests if r[1] != "/v1/auth/login"]
    assert len(refused) == 3  # no call was refused on the way


async def test_langson_wrong_credentials_are_unauthorised(langson: FakeLangson) -> None:
    for credential, said in (
        (langson_credential(password="sai"), "login: credentials refused"),
        (langson_credential(secret="sai"), "error 15"),
    ):
        client = LangsonClient(settings(langson.url, "langson", credential), credential)
        try:
            with pytest.raises(UpstreamUnauthorised, match=said):
                await client.pending("edoc")
        finally:
            await client.close()


@pytest.mark.parametrize(
    ("code", "error", "said"),
    [
        ("18", UpstreamRefused, "error 18 \\(recipient not found\\)"),
        ("22", UpstreamRefused, "error 22 \\(edXML format not compliant\\)"),
        ("15", UpstreamUnauthorised, "error 15"),
        ("20", UpstreamUnavailable, "error 20 \\(LGSP system error\\)"),
    ],
)
async def test_langson_error_codes_map_to_what_the_caller_does_next(
    langson: FakeLangson,
    langson_client: LangsonClient,
    code: str,
    error: type[LienthongError],
    said: str,
) -> None:
    langson.mode, langson.fail_code = "fail", code
    with pytest.raises(error, match=f"sendEdoc edoc: {said}"):
        await langson_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])


async def test_langson_edxml_that_is_neither_xml_nor_base64_is_garbled(
    langson: FakeLangson, langson_client: LangsonClient
) -> None:
    langson.edxml_form = "base64"
    langson.put_pending("edoc", "zip", b"PK\x03\x04 not xml")
    langson.put_pending("edoc", "junk", "không phải base64!".encode())
    with pytest.raises(UpstreamGarbled, match="base64 of something not XML"):
        await langson_client.fetch("zip")
    langson.edxml_form = "text"
    with pytest.raises(UpstreamGarbled, match="neither XML nor base64"):
        await langson_client.fetch("junk")


def test_langson_without_a_login_is_a_configuration_error() -> None:
    credential = UpstreamCredential(name="x", systemid=OURS, secret=b"s")
    with pytest.raises(ConfigurationError, match="username, password and application_code"):
        LangsonClient(settings("http://127.0.0.1:1", "langson", credential), credential)


# --- both: an axis that misbehaves ---------------------------------------------------------

MISBEHAVIOUR = [
    ("down", UpstreamUnavailable, "HTTP 503"),
    ("garbage", UpstreamGarbled, "not JSON.*starts b'\\\\x00garbage"),
    ("401", UpstreamUnauthorised, "credentials refused \\(HTTP 401\\)"),
]


@pytest.mark.parametrize(("mode", "error", "said"), MISBEHAVIOUR)
@pytest.mark.parametrize("call", ["send", "pending", "fetch", "confirm", "agencies"])
async def test_bkav_misbehaving_raises_the_matching_error(
    bkav: FakeBkav,
    bkav_client: BkavClient,
    mode: str,
    error: type[LienthongError],
    said: str,
    call: str,
) -> None:
    bkav.put_pending("edoc", "41", PACKAGE)
    bkav.mode = mode
    with pytest.raises(error, match=f"bkav upstream 'tinh' \\(so-noi-vu\\): .*{said}") as caught:
        await run(bkav_client, call, "41")
    assert_no_secrets([{"error": str(caught.value)}])


@pytest.mark.parametrize(("mode", "error", "said"), MISBEHAVIOUR)
@pytest.mark.parametrize("call", ["send", "pending", "fetch", "confirm", "agencies"])
async def test_langson_misbehaving_raises_the_matching_error(
    langson: FakeLangson,
    langson_client: LangsonClient,
    mode: str,
    error: type[LienthongError],
    said: str,
    call: str,
) -> None:
    langson.put_pending("edoc", "a1", PACKAGE)
    await langson_client.pending("edoc")  # logged in: the call itself meets the mode
    langson.mode = mode
    with pytest.raises(error, match=f"langson upstream 'tinh' \\(so-noi-vu\\): .*{said}") as caught:
        await run(langson_client, call, "a1")
    assert_no_secrets([{"error": str(caught.value)}])


async def test_bkav_failure_answer_is_refused_with_its_code_and_errors(
    bkav: FakeBkav, bkav_client: BkavClient
) -> None:
    bkav.mode = "fail"
    with pytest.raises(UpstreamRefused, match="status Fail, code 9999: ExistDoc: Document is"):
        await bkav_client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])


def padded(size: int) -> bytes:
    return PACKAGE.replace(b"-->", b" " * (size - len(PACKAGE)) + b"-->")


@pytest.mark.parametrize(
    ("protocol", "form"), [("bkav", "raw"), ("bkav", "json"), ("langson", "base64")]
)
async def test_a_package_is_read_up_to_its_cap_and_no_further(
    bkav: FakeBkav, langson: FakeLangson, protocol: str, form: str
) -> None:
    """Past max_bytes it still comes back (the bridge refuses it and says so upstream);
    past what max_bytes could be in base64 nothing more is read."""
    max_bytes = 10_000
    fake = bkav if protocol == "bkav" else langson
    bkav.document_form, langson.edxml_form = form, form
    fake.put_pending("edoc", "big", padded(2 * max_bytes))
    fake.put_pending("edoc", "huge", padded(200 * max_bytes))
    client = client_for(protocol, fake.url, max_bytes=max_bytes)
    try:
        assert await client.fetch("big") == padded(2 * max_bytes)
        with pytest.raises(
            PackageTooLarge, match=r"(getDocument|getEdoc) huge: answer larger than"
        ):
            await client.fetch("huge")
    finally:
        await client.close()


@pytest.mark.parametrize("protocol", ["bkav", "langson"])
async def test_a_closed_port_or_a_slow_axis_is_unavailable(
    bkav: FakeBkav, langson: FakeLangson, protocol: str
) -> None:
    fake = bkav if protocol == "bkav" else langson
    down = client_for(protocol, closed_port())
    slow = client_for(protocol, fake.url, deadline_s=0.2)
    fake.mode = "slow"
    try:
        with pytest.raises(UpstreamUnavailable, match=r"cannot connect to 127\.0\.0\.1"):
            await down.pending("edoc")
        with pytest.raises(UpstreamUnavailable, match=r"no answer within 0\.2 s"):
            await slow.pending("edoc")
    finally:
        await down.close()
        await slow.close()


async def run(client: BkavClient | LangsonClient, call: str, doc_id: str) -> object:
    if call == "send":
        return await client.send(PACKAGE, kind="edoc", sender=SENDER, recipients=[OURS])
    if call == "pending":
        return await client.pending("edoc")
    if call == "fetch":
        return await client.fetch(doc_id)
    if call == "confirm":
        await client.confirm(doc_id, ok=True)
        return None
    return await client.agencies()
