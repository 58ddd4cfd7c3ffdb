"""A client of the Lạng Sơn LGSP "apiltvb" provincial axis (docs: reference edxml.md
§7.2), for one credential: ``username``, ``password`` and ``application_code`` log in;
``systemid`` and ``secret`` are the agency system's ``X-SystemId`` and ``X-SecretKey``.

Login: ``POST /v1/auth/login?allow_anonymous=true`` with ``{username, password,
applicationCode, otp: null, twoFactorProvider: null, typeObjs: [0, 1]}`` answers a JWT in
``data.token`` that lives about 30 minutes. It is kept and used for 25 minutes (by the
injected clock), then a new login is made; a call answered HTTP 401 logs in again and is
made once more. Every other call sends ``Authorization: Bearer <jwt>``, ``X-SystemId`` and
``X-SecretKey``:

- ``send``: ``POST /v1/sendEdoc``, multipart: the part ``edocFile`` (``application/xml``,
  a ``*.edxml`` file name) and the field ``messageType`` (``edoc``/``status``). The axis
  reads sender and recipients from the package.
- ``pending``: ``GET /v1/syncReceivedEdocList?messageType=&fromDate=&toDate=``, dates
  ``YYYY/MM/DD`` in Vietnam's time zone, from the day ``window_days`` (7 unless told)
  times 24 hours ago to today.
  The list holds what was received in the window whatever became of it; items whose
  ``status`` is ``done`` or ``fail`` were answered by us (``confirm``) and are left out, so
  a refused package is not fetched for ever; ``initial``, ``processing`` and anything else
  are pending.
- ``fetch``: ``GET /v1/getEdoc?docId=``: ``data.edxml``, the edXML either as text or in
  base64, told apart by its first character (``<`` after a byte-order mark and white
  space: text, encoded as UTF-8; otherwise strict base64, which must give XML). One team
  found the production axis answering the base64 in ``data.data`` instead; read too.
  ``data.attachments`` (``fileName``, ``fileContent``) may come beside it: the package is
  returned as given, never rebuilt from them (that would break its signature); when they
  came and the package holds no ``AttachmentEncoded``, ``upstream.attachments_outside``
  is logged so that an operator sees what admission will then say.
- ``confirm``: ``POST /v1/updateStatus`` with ``{docId, status: "done"|"fail"}`` and the
  reason as ``description``.
- ``agencies``: ``GET /v1/getAgenciesList``, fields read under several names.

Answers: the reference gives ``{success, message, docId}`` and ``{success: false, data:
{errorCode, errorDesc}}``; the team above found ``{code: 0|200, message, data,
errorDetail: [...]}`` without ``success`` in production. An answer fails when ``success``
is false, or (without ``success``) ``code`` is not 0 or 200, or an ``errorCode`` other than
0 or an ``errorDetail`` is given. The axis's error codes: 15 (wrong SystemId/SecretKey) is
``UpstreamUnauthorised``; 20 (the LGSP's own system error) ``UpstreamUnavailable``, tried
again; any other (10 invalid file, 18 recipient not found, 19 sender not registered, 21
file processing error, 22 edXML not compliant, 23 recipient locked) ``UpstreamRefused``
with the code and its description. A failed login is ``UpstreamUnauthorised``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import structlog

from adapters.upstream_http import (
    LIST_CAP,
    Reply,
    UpstreamHttp,
    agency_from,
    decode_base64,
    document_cap,
    first,
    list_in,
    looks_like_xml,
    text_id,
)
from exchange.errors import (
    ConfigurationError,
    UpstreamRefused,
    UpstreamUnauthorised,
    UpstreamUnavailable,
)
from exchange.upstream import (
    PendingItem,
    UpstreamAgency,
    UpstreamCredential,
    UpstreamSettings,
)

log = structlog.get_logger("lienthong.upstream")

TOKEN_LIFETIME = timedelta(minutes=25)  # the axis's JWT lives about 30 minutes
TIME_ZONE = ZoneInfo("Asia/Ho_Chi_Minh")  # the axis's dates are local dates
SETTLED = frozenset({"done", "fail"})  # the statuses our own confirm leaves
ERRORS = {
    "10": "invalid file",
    "15": "wrong SystemId or SecretKey",
    "18": "recipient not found",
    "19": "sender not registered",
    "20": "LGSP system error",
    "21": "file processing error",
    "22": "edXML format not compliant",
    "23": "recipient locked",
}
UNAUTHORISED_CODES = frozenset({"15"})
UNAVAILABLE_CODES = frozenset({"20"})
_OK_CODES = frozenset({"0", "200"})


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LangsonClient:
    """One credential's session with the Lạng Sơn LGSP (exchange.upstream.UpstreamClient)."""

    def __init__(
        self,
        settings: UpstreamSettings,
        credential: UpstreamCredential,
        *,
        window_days: int = 7,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        where = f"upstream {settings.name!r} credential {credential.name!r}"
        if not (credential.username and credential.password and credential.application_code):
            raise ConfigurationError(
                f"{where}: the Lạng Sơn LGSP needs username, password and application_code"
            )
        try:
            secret = credential.secret.decode("utf-8").strip()  # a file's newline
        except UnicodeDecodeError:
            raise ConfigurationError(f"{where}: the X-SecretKey is not UTF-8 text") from None
        if window_days < 1:
            raise ConfigurationError(f"{where}: window_days must be 1 or more, not {window_days}")
        self._login_body = {
            "username": credential.username,
            "password": credential.password,
            "applicationCode": credential.application_code,
            "otp": None,
            "twoFactorProvider": None,
            "typeObjs": [0, 1],
        }
        self._system = {"X-SystemId": credential.systemid, "X-SecretKey": secret}
        self._window = timedelta(days=window_days)
        self._clock = clock
        self._max_bytes = settings.max_bytes
        self._http = UpstreamHttp(settings, credential)
        self._log = log.bind(upstream=settings.name, credential=credential.name)
        self._jwt: str | None = None
        self._jwt_at = datetime.min.replace(tzinfo=UTC)
        self._login_lock = asyncio.Lock()

    async def send(self, data: bytes, *, kind: str, sender: str, recipients: Sequence[str]) -> str:
        filename = f"{hashlib.sha256(data).hexdigest()[:32]}.edxml"

        def form() -> aiohttp.FormData:  # a form is spent once sent: one per attempt
            body = aiohttp.FormData()
            body.add_field("edocFile", data, content_type="application/xml", filename=filename)
            body.add_field("messageType", _kind(kind))
            return body

        call = f"sendEdoc {kind}"
        reply = await self._call("POST", "/v1/sendEdoc", call, LIST_CAP, form=form)
        answer = self._answer(call, reply)
        inner = answer.get("data")
        doc_id = text_id(first(answer, "docId", "DocId")) or (
            text_id(first(inner, "docId", "DocId")) if isinstance(inner, Mapping) else None
        )
        if doc_id is None:
            raise self._http.garbled(call, reply, "no docId in the answer")
        return doc_id

    async def pending(self, kind: str) -> list[PendingItem]:
        now = self._clock().astimezone(TIME_ZONE)
        params = {
            "messageType": _kind(kind),
            "fromDate": (now - self._window).strftime("%Y/%m/%d"),
            "toDate": now.strftime("%Y/%m/%d"),
        }
        call = f"syncReceivedEdocList {kind}"
        reply = await self._call("GET", "/v1/syncReceivedEdocList", call, LIST_CAP, params=params)
        entries = list_in(self._answer(call, reply), "data", "items", "content", "list")
        if entries is None:
            raise self._http.garbled(call, reply, "no list of documents in the answer")
        items = []
        for entry in entries:
            doc_id = text_id(first(entry, "docId", "DocId")) if isinstance(entry, Mapping) else None
            if doc_id is None:
                raise self._http.garbled(
                    call, reply, f"an entry without a docId: {repr(entry)[:200]}"
                )
            status = entry.get("status")
            if isinstance(status, str) and status.strip().lower() in SETTLED:
                continue
            items.append(
                PendingItem(
                    doc_id,
                    kind,
                    sender=_organ(entry.get("from")),
                    recipient=_organ(entry.get("to")),
                )
            )
        return items

    async def fetch(self, doc_id: str) -> bytes:
        call = f"getEdoc {doc_id}"
        reply = await self._call(
            "GET",
            "/v1/getEdoc",
            call,
            document_cap(self._max_bytes),
            document=True,
            params={"docId": doc_id},
        )
        inner = self._answer(call, reply).get("data")
        edxml = first(inner, "edxml", "edXml", "data") if isinstance(inner, Mapping) else None
        if not isinstance(edxml, str) or not edxml.strip():
            raise self._http.garbled(call, reply, "no data.edxml in the answer")
        if edxml.lstrip("\ufeff \t\r\n").startswith("<"):
            data = edxml.encode("utf-8")
        else:
            try:
                data = decode_base64(edxml)
            except ValueError as exc:
                raise self._http.garbled(
                    call, reply, f"edxml is neither XML nor base64 ({exc})"
                ) from None
            if not looks_like_xml(data):
                raise self._http.garbled(call, reply, "edxml is base64 of something not XML")
        attachments = inner.get("attachments") if isinstance(inner, Mapping) else None
        if isinstance(attachments, list) and attachments and b"AttachmentEncoded" not in data:
            self._log.warning(
                "upstream.attachments_outside", doc_id=doc_id, attachments=len(attachments)
            )
        return data

    async def confirm(self, doc_id: str, *, ok: bool, reason: str | None = None) -> None:
        body: dict[str, str] = {"docId": doc_id, "status": "done" if ok else "fail"}
        if reason is not None:
            body["description"] = reason
        call = f"updateStatus {doc_id} {body['status']}"
        reply = await self._call("POST", "/v1/updateStatus", call, LIST_CAP, json=body)
        self._answer(call, reply)

    async def agencies(self) -> list[UpstreamAgency]:
        call = "getAgenciesList"
        reply = await self._call("GET", "/v1/getAgenciesList", call, LIST_CAP)
        entries = list_in(self._answer(call, reply), "data", "items", "content", "list")
        if entries is None:
            raise self._http.garbled(call, reply, "no list of agencies in the answer")
        agencies = [a for a in (agency_from(e) for e in entries) if a is not None]
        if len(agencies) < len(entries):
            self._log.warning("upstream.agencies_without_id", skipped=len(entries) - len(agencies))
        return agencies

    async def close(self) -> None:
        await self._http.close()

    # --- the session's token ---------------------------------------------------------

    async def _bearer(self) -> str:
        async with self._login_lock:  # callers that find it stale together log in once
            if self._jwt is None or self._clock() - self._jwt_at >= TOKEN_LIFETIME:
                self._jwt = await self._login()
                self._jwt_at = self._clock()
            return self._jwt

    def _forget(self, jwt: str) -> None:
        if self._jwt == jwt:  # unless another call has logged in since
            self._jwt = None

    async def _login(self) -> str:
        call = "login"
        reply = await self._http.request(
            "POST",
            "/v1/auth/login",
            call=call,
            cap=LIST_CAP,
            params={"allow_anonymous": "true"},
            json=self._login_body,
        )
        if reply.status in (401, 403):
            raise self._http.unauthorised(call, reply)
        answer = self._http.json_of(call, reply)
        if not isinstance(answer, Mapping):
            raise self._http.garbled(call, reply, "answer is not a JSON object")
        failure = _failure(answer)
        if failure is not None:
            code, desc = failure
            if code in UNAVAILABLE_CODES:
                raise UpstreamUnavailable(f"{self._http.label}: {call}: {_said(code, desc)}")
            raise UpstreamUnauthorised(f"{self._http.label}: {call}: {_said(code, desc)}")
        inner = answer.get("data")
        token = first(inner, "token", "accessToken") if isinstance(inner, Mapping) else None
        token = token if isinstance(token, str) else answer.get("token")
        if not isinstance(token, str) or not token:
            raise self._http.garbled(call, reply, "no data.token in the answer")
        self._log.info("upstream.logged_in")
        return token

    async def _call(
        self,
        method: str,
        path: str,
        call: str,
        cap: int,
        *,
        document: bool = False,
        form: Callable[[], aiohttp.FormData] | None = None,
        **kwargs: Any,
    ) -> Reply:
        """A call with the token and the system's keys; once more after a fresh login if the
        token was refused (HTTP 401)."""
        for attempt in (1, 2):
            jwt = await self._bearer()
            headers = {"Authorization": f"Bearer {jwt}", **self._system}
            if form is not None:
                kwargs["data"] = form()
            reply = await self._http.request(
                method, path, call=call, cap=cap, document=document, headers=headers, **kwargs
            )
            if reply.status != 401 or attempt == 2:
                return reply
            self._forget(jwt)
            self._log.info("upstream.token_refused", call=call)
        raise AssertionError("unreachable")

    def _answer(self, call: str, reply: Reply) -> Mapping[str, Any]:
        """The answer's JSON object once it is neither a refusal of our keys nor a failure."""
        if reply.status in (401, 403):
            raise self._http.unauthorised(call, reply)
        answer = self._http.json_of(call, reply)
        if not isinstance(answer, Mapping):
            raise self._http.garbled(call, reply, "answer is not a JSON object")
        failure = _failure(answer)
        if failure is not None:
            code, desc = failure
            said = f"{self._http.label}: {call}: {_said(code, desc)}"
            if code in UNAUTHORISED_CODES:
                raise UpstreamUnauthorised(said)
            if code in UNAVAILABLE_CODES:
                raise UpstreamUnavailable(said)
            raise UpstreamRefused(said)
        if not reply.ok:
            raise self._http.garbled(call, reply, "an HTTP error without the API's failure")
        return answer


def _kind(kind: str) -> str:
    if kind not in ("edoc", "status"):
        raise ValueError(f"kind is 'edoc' or 'status', not {kind!r}")
    return kind


def _organ(value: Any) -> str | None:
    """An OrganId from a list entry's ``from``/``to``: a code, or the only one of a list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return text_id(value)


def _failure(answer: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """None when the answer says success, else (the axis's error code, its description)."""
    inner = answer.get("data")
    inner = inner if isinstance(inner, Mapping) else {}
    code = first(inner, "errorCode", "ErrorCode")
    if code is None:
        code = first(answer, "errorCode", "ErrorCode")
    code_text = None if code is None else str(code).strip()
    detail = answer.get("errorDetail")
    success = answer.get("success")
    if success is not None:
        failed = success is False or str(success).strip().lower() == "false"
    else:
        top = answer.get("code")
        failed = top is not None and str(top).strip() not in _OK_CODES
        if failed and code_text is None:
            code_text = str(top).strip()
    failed = failed or (code_text not in (None, "", "0")) or bool(detail)
    if not failed:
        return None
    desc = first(inner, "errorDesc", "ErrorDesc") or answer.get("message")
    if not desc and isinstance(detail, list) and detail:
        head = detail[0]
        desc = first(head, "exception", "message") if isinstance(head, Mapping) else head
    return code_text or None, str(desc or "no description")[:500]


def _said(code: str | None, desc: str) -> str:
    if code is None:
        return f"failed: {desc}"
    meaning = ERRORS.get(code)
    return f"error {code}" + (f" ({meaning})" if meaning else "") + f": {desc}"
