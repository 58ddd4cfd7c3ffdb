"""The national axis (VDXP) as one of its systems sees it: the client side of the SDK's
protocol (``SDKVXP-2.0.1``, edxml.md §6), for one credential (docs/upstream-vdxp.md).

Every call is a POST to ``<endpoint>/<call>`` with a fresh set of XroadVnpt- headers,
signed with the credential's secret (exchange/xroad.py), under one deadline from connect
to last byte. Answers are read up to a cap, then judged in one place: down, slow or 5xx is
``UpstreamUnavailable``; credentials refused ``UpstreamUnauthorised``; not the SDK's JSON
``UpstreamGarbled``; ``FAIL`` (or an ``ErrorCode`` other than "0") ``UpstreamRefused``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any, ParamSpec, TypeVar

import aiohttp
import structlog
from yarl import URL

from exchange import xroad
from exchange.errors import (
    LienthongError,
    UpstreamGarbled,
    UpstreamRefused,
    UpstreamUnauthorised,
    UpstreamUnavailable,
)
from exchange.reporting import VIETNAM
from exchange.upstream import (
    KINDS,
    PendingItem,
    UpstreamAgency,
    UpstreamCredential,
    UpstreamSettings,
)

log = structlog.get_logger("lienthong.upstream")
T = TypeVar("T")
P = ParamSpec("P")

MAX_CONNECTIONS = 8  # open connections of one client (one credential) to the axis
SMALL_ANSWER = 1024 * 1024  # sendEdoc, updateStatus, and any refusal
LIST_ANSWER = 32 * 1024 * 1024  # getReceivedEdocList
AGENCIES_ANSWER = 64 * 1024 * 1024  # getAgenciesList: one axis lists 111,339 (~25 MB)
SLACK = 64 * 1024  # getEdoc's JSON around its base64, beyond ``\/`` escapes (1/16 more)
PARSE_IN_THREAD = 256 * 1024  # answers larger than this are parsed off the event loop
CHUNK = 64 * 1024
PREVIEW = 200  # bytes of an answer quoted in an UpstreamGarbled message
DESCRIPTION = 200  # characters of a confirm's reason sent as the signed description
REFUSAL = 500  # characters of an upstream's ErrorDesc kept in UpstreamRefused
AUTH_CODES = frozenset({"401", "403"})
BUSY_CODES = frozenset({"429", "503"})  # "not now": our facade's intake retry, rate limits
_TRANSPORT_ID = re.compile(r"[\x21-\x7e]{1,256}")  # a docId safe to send back as a header


def now() -> datetime:
    """The SDK's clock: the local time of Vietnam (its timestamp carries no zone)."""
    return datetime.now(VIETNAM)


class VdxpClient:
    """One credential's session with a VDXP-style axis (exchange.upstream.UpstreamClient)."""

    def __init__(
        self,
        settings: UpstreamSettings,
        credential: UpstreamCredential,
        *,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self._settings = settings
        self._credential = credential
        self._clock = clock
        self._base = settings.endpoint.rstrip("/")
        # where errors and logs say the axis is: no userinfo, query or fragment
        self._where = str(URL(self._base).with_user(None).with_query(None).with_fragment(None))
        self._session: aiohttp.ClientSession | None = None

    async def send(self, data: bytes, *, kind: str, sender: str, recipients: Sequence[str]) -> str:
        _check_kind(kind)
        fields = {"servicetype": xroad.SERVICE_TYPE, "messagetype": kind, "from": sender}
        if kind == "edoc":
            fields["to"] = json.dumps(list(recipients), separators=(",", ":"))
        fields["hash-file"] = xroad.file_hash(data)
        form = aiohttp.FormData()
        form.add_field(
            "file_doc",
            data,
            filename=f"{hashlib.sha256(data).hexdigest()}.edxml",
            content_type="application/octet-stream",
        )
        return await self._call("sendEdoc", fields, sent_doc_id, cap=SMALL_ANSWER, form=form)

    async def pending(self, kind: str) -> list[PendingItem]:
        _check_kind(kind)
        fields = {"servicetype": xroad.SERVICE_TYPE, "messagetype": kind}
        read = partial(pending_items, kind, self._settings.name)
        return await self._call("getReceivedEdocList", fields, read, cap=LIST_ANSWER)

    async def fetch(self, doc_id: str) -> bytes:
        _check_transport_id("getEdoc", doc_id)
        read = partial(package_bytes, self._settings.max_bytes)
        cap = edoc_cap(self._settings.max_bytes)
        return await self._call("getEdoc", {"docId": doc_id}, read, cap=cap)

    async def confirm(self, doc_id: str, *, ok: bool, reason: str | None = None) -> None:
        _check_transport_id("updateStatus", doc_id)
        fields = {"docId": doc_id, "status": "done" if ok else "fail"}
        if reason:
            fields["description"] = ascii_text(reason, DESCRIPTION)
        await self._call("updateStatus", fields, _nothing, cap=SMALL_ANSWER)

    async def agencies(self) -> list[UpstreamAgency]:
        read = partial(agency_list, self._settings.name)
        return await self._call("getAgenciesList", {}, read, cap=AGENCIES_ANSWER)

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # --- one call ------------------------------------------------------------------------

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._settings.deadline_s),
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            )
        return self._session

    def _headers(self, fields: dict[str, str]) -> dict[str, str]:
        """A fresh signed set: systemid and timestamp first, then the call's own fields.
        ``Content-Type`` goes unsigned, as the HTTP body's (a multipart boundary)."""
        signed = {
            "systemid": self._credential.systemid,
            "timestamp": xroad.format_timestamp(self._clock()),
            **fields,
        }
        return xroad.signed_headers(self._credential.secret, signed)

    async def _call(
        self,
        call: str,
        fields: dict[str, str],
        read: Callable[[dict[str, Any]], T],
        *,
        cap: int,
        form: aiohttp.FormData | None = None,
    ) -> T:
        """POST one call and ``read`` its answer; every failure as an Upstream* error."""
        where = f"{call} at {self._where}"
        headers = self._headers(fields)
        body: aiohttp.FormData | bytes = form if form is not None else json.dumps(fields).encode()
        if form is None:
            headers["Content-Type"] = "application/json"
        started = time.monotonic()
        http: int | None = None
        code: str | None = None
        try:
            try:
                async with self._http().post(
                    f"{self._base}/{call}", headers=headers, data=body, allow_redirects=False
                ) as reply:
                    http = reply.status
                    if http >= 500 or http in (408, 429):
                        raise UpstreamUnavailable(f"{where}: HTTP {http}")
                    raw = await _read(where, reply, SMALL_ANSWER if http >= 400 else cap)
            except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
                deadline = self._settings.deadline_s
                raise UpstreamUnavailable(f"{where}: no answer within {deadline:g} s") from exc
            except aiohttp.ClientError as exc:  # its text may hold the address: only the kind
                raise UpstreamUnavailable(f"{where}: {type(exc).__name__}") from exc
            return await _off_loop(len(raw), answer_of, call, where, http, raw, read)
        except LienthongError as error:
            code = error.code
            raise
        finally:
            log.info(
                "upstream.call",
                upstream=self._settings.name,
                credential=self._credential.name,
                call=call,
                http=http,
                code=code,
                ms=round((time.monotonic() - started) * 1000),
            )


async def _read(where: str, reply: aiohttp.ClientResponse, cap: int) -> bytes:
    """The body of an answer, refused as soon as it is over ``cap``."""
    if (reply.content_length or 0) > cap:
        raise UpstreamGarbled(f"{where}: the answer is {reply.content_length} bytes, over {cap}")
    raw = bytearray()
    while chunk := await reply.content.read(CHUNK):
        raw += chunk
        if len(raw) > cap:
            raise UpstreamGarbled(f"{where}: the answer is over {cap} bytes")
    return bytes(raw)


async def _off_loop(size: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Parse a large answer (JSON, base64) in a thread, a small one straight away."""
    if size > PARSE_IN_THREAD:
        return await asyncio.to_thread(work, *args, **kwargs)
    return work(*args, **kwargs)


# --- reading answers (no I/O) ----------------------------------------------------------------


class Shape(ValueError):
    """An answer that judged a success but lacks what its call returns."""


def edoc_cap(max_bytes: int) -> int:
    """The largest getEdoc answer read: base64 of ``max_bytes``, a JSON escape for every
    ``/`` it may hold, and the envelope."""
    encoded = _base64_length(max_bytes)
    return encoded + encoded // 16 + SLACK


def _base64_length(size: int) -> int:
    return 4 * -(-size // 3)


def garbled(where: str, what: str, raw: bytes) -> UpstreamGarbled:
    return UpstreamGarbled(f"{where}: {what}; the answer begins {raw[:PREVIEW]!r}")


def judge(call: str, where: str, http: int, raw: bytes) -> dict[str, Any]:
    """The SDK's answer of one call, or the error it amounts to."""
    try:
        answer = json.loads(raw)
    except (ValueError, RecursionError):
        answer = None
    if not isinstance(answer, dict):
        if http in (401, 403):
            raise UpstreamUnauthorised(f"{where}: HTTP {http}")
        raise garbled(where, f"HTTP {http}, not a JSON object", raw)
    status, code, desc = answer.get("status"), answer.get("ErrorCode"), answer.get("ErrorDesc", "")
    if isinstance(code, int) and not isinstance(code, bool):
        code = str(code)
    if not isinstance(status, str) or not isinstance(code, str) or not isinstance(desc, str):
        raise garbled(where, f"HTTP {http}, not status, ErrorCode and ErrorDesc strings", raw)
    refused = status.upper() == "FAIL" or code != xroad.SDK_OK
    if http in (401, 403) or (refused and code in AUTH_CODES):
        raise UpstreamUnauthorised(f"{where}: HTTP {http}: [{code}] {desc[:REFUSAL]}")
    if refused and code in BUSY_CODES:
        raise UpstreamUnavailable(f"{where}: [{code}] {desc[:REFUSAL]}")
    if refused:
        raise UpstreamRefused(f"{call}: [{code}] {desc[:REFUSAL]}")
    if http >= 400:
        raise garbled(where, f"HTTP {http} with an answer that says it succeeded", raw)
    return answer


def answer_of(
    call: str, where: str, http: int, raw: bytes, read: Callable[[dict[str, Any]], T]
) -> T:
    try:
        return read(judge(call, where, http, raw))
    except Shape as exc:
        raise garbled(where, str(exc), raw) from None


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind is {kind!r}; expected one of {', '.join(KINDS)}")


def _is_transport_id(value: object) -> bool:
    return isinstance(value, str) and _TRANSPORT_ID.fullmatch(value) is not None


def _check_transport_id(call: str, doc_id: str) -> None:
    """A docId comes from the axis: one that could not travel back as a header is its own."""
    if not _is_transport_id(doc_id):
        raise UpstreamGarbled(f"{call}: the docId {doc_id[:PREVIEW]!r} is not a transport id")


def sent_doc_id(answer: dict[str, Any]) -> str:
    doc_id = answer.get("DocId")
    if not _is_transport_id(doc_id):
        raise Shape("no DocId, or not a transport id")
    return str(doc_id)


def _nothing(answer: dict[str, Any]) -> None:
    return None


def _rows(answer: dict[str, Any]) -> list[Any]:
    if "data" not in answer:
        raise Shape("no data")
    data = answer["data"]
    if data is None:
        return []
    if not isinstance(data, list):
        raise Shape(f"data is a JSON {type(data).__name__}, not a list")
    return data


def _text(value: object) -> str | None:
    """A string field, or a number an axis writes for an id; anything else is absent."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def pending_items(kind: str, upstream: str, answer: dict[str, Any]) -> list[PendingItem]:
    """getReceivedEdocList's rows; a row without a usable docId is skipped and logged."""
    items = []
    for index, row in enumerate(_rows(answer)):
        doc_id = row.get("docId") if isinstance(row, dict) else None
        if not isinstance(doc_id, str) or not _is_transport_id(doc_id):
            log.warning("upstream.row_skipped", upstream=upstream, call="pending", row=index)
            continue
        listed = (_text(row.get("messageType")) or "").lower()
        items.append(
            PendingItem(
                doc_id,
                listed if listed in KINDS else kind,
                _text(row.get("from")),
                _text(row.get("to")),
            )
        )
    return items


def _old_codes(value: object) -> tuple[str, ...]:
    parts = value.split(",") if isinstance(value, str) else value
    if not isinstance(parts, list):
        return ()
    return tuple(code for code in map(_text, parts) if code)


def agency_list(upstream: str, answer: dict[str, Any]) -> list[UpstreamAgency]:
    """getAgenciesList's rows; a row without a code (or id) is skipped and logged."""
    agencies = []
    for index, row in enumerate(_rows(answer)):
        organ = (_text(row.get("code")) or _text(row.get("id"))) if isinstance(row, dict) else None
        if organ is None:
            log.warning("upstream.row_skipped", upstream=upstream, call="agencies", row=index)
            continue
        agencies.append(
            UpstreamAgency(
                organ,
                _text(row.get("name")) or "",
                _old_codes(row.get("oldCode")),
                _text(row.get("pid")),
                _text(row.get("mail")) or "",
            )
        )
    return agencies


def package_bytes(max_bytes: int, answer: dict[str, Any]) -> bytes:
    """getEdoc's ``data``: strict base64 of at most ``max_bytes`` (line breaks allowed, as
    some Java encoders wrap at 76 characters)."""
    data = answer.get("data")
    if not isinstance(data, str) or not data:
        raise Shape("data is not a base64 string")
    data = data.replace("\r", "").replace("\n", "")
    if len(data) > _base64_length(max_bytes):
        raise Shape(f"the package is over the {max_bytes}-byte cap")
    try:
        package = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Shape(f"data is not base64 ({exc})") from None
    if len(package) > max_bytes:
        raise Shape(f"the package is over the {max_bytes}-byte cap")
    return package


def ascii_text(text: str, most: int) -> str:
    """Free text as a header value that any server reads alike: JSON's escapes for what
    is not printable ASCII, at most ``most`` characters of the original."""
    return json.dumps(text[:most], ensure_ascii=True)[1:-1]
