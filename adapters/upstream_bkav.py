"""A client of a Bkav "EdocService" provincial axis (docs: reference edxml.md §7.1), for
one credential: ``systemid`` is its ``organid``, ``secret`` its token.

Every call carries the headers ``organid`` and ``authorization`` (the token as is);
``type`` is ``EDOC`` or ``STATUS``. Paths are relative to the configured endpoint (which
ends in ``/EdocService``):

- ``send``: ``POST /sendDocument``, the package as the raw body
  (``application/octet-stream``), ``organid`` = the package's sender (its From OrganId),
  ``hash-edoc`` = the SHA-256 of the bytes in lowercase hex.
- ``pending``: ``GET /getPendingDocIds`` for our ``organid``.
- ``fetch``: ``POST /getDocument`` with ``docid`` (and ``type``, which tells a document
  from a status).
- ``confirm``: ``POST /confirmReceived`` with ``docid``: the item leaves the pending list.
- ``agencies``: ``GET /getOrganizations?organId=<systemid>`` (also sent as ``domain=``,
  the name one server generation reads).

Answer shapes. The reference confirms only the auth failure, HTTP 401 with
``{"code": "9999", "status": "False", "errors": [...]}``. The rest is read tolerantly, from
what the reference implies and from the product's public source (EdocController of
edoc-service-2.0), which answers HTTP 200 with ``{"status": "Success"|"Fail"|"Error",
"code": "0"|"9999", "errors": [{"code", "description"}], ...}``:

- send: ``docId`` (a number in that source; also ``DocId`` or ``data.docId``); assumed
  ``{"status": "OK"|..., "docId": ...}`` where the source is silent.
- pending: a list of ``{docId, organId}`` (the reference), or ``{"pendingResult": [...]}``,
  or ``{"docIDs": [ids]}`` (the source); ``organId`` becomes the item's recipient (our own
  ``organid`` when the list has bare ids).
- fetch: the raw edXML as the body (what the reference implies), or JSON whose ``data`` is
  the edXML in base64 (what the source does). Told apart by the first byte, so neither is
  guessed: ``<`` is raw XML, ``{`` is JSON; a web page or anything else is garbled.
- agencies: a list, or ``{"organizations": [...]}``; fields read under several names
  (``organId``/``code``/``id``, ``name``/``organName``, ``oldCode``, ``parentId``...).

A failure is ``status`` other than OK/Success/true or ``code`` other than 0: it raises
``UpstreamRefused`` with the code and the errors, except an ``InternalServer`` error, the
server's own trouble, which is ``UpstreamUnavailable``.

Decisions:

- Documents and statuses are numbered apart by the server (two tables), and
  ``getDocument`` needs ``type`` to know which is meant. So a pending status's id is
  ``status:<docId>``; ``fetch`` and ``confirm`` read the kind back from it. A document's id
  is the server's own.
- The API has no way to say "refused": ``confirm(ok=False)`` calls ``confirmReceived``
  too, so that a refused package is not fetched on every poll for ever, and logs
  ``bridge.refused_confirmed`` with the reason. The sender learns of the refusal from the
  status the bridge sends back, not from this axis.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

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
    looks_like_html,
    looks_like_xml,
    text_id,
)
from exchange.errors import (
    ConfigurationError,
    UpstreamGarbled,
    UpstreamRefused,
    UpstreamUnavailable,
)
from exchange.upstream import (
    PendingItem,
    UpstreamAgency,
    UpstreamCredential,
    UpstreamSettings,
)

log = structlog.get_logger("lienthong.upstream")

TYPES = {"edoc": "EDOC", "status": "STATUS"}
STATUS_PREFIX = "status:"  # a pending status's id: the server numbers statuses apart
_OK_STATUSES = frozenset({"ok", "success", "true"})
_OK_CODES = frozenset({"0", "200"})
_SERVER_TROUBLE = "internalserver"  # the error code the server gives its own exceptions


class BkavClient:
    """One credential's session with a Bkav EdocService (exchange.upstream.UpstreamClient)."""

    def __init__(self, settings: UpstreamSettings, credential: UpstreamCredential) -> None:
        try:
            self._token = credential.secret.decode("utf-8").strip()  # a file's newline
        except UnicodeDecodeError:
            raise ConfigurationError(
                f"upstream {settings.name!r} credential {credential.name!r}: the Bkav token "
                "is not UTF-8 text"
            ) from None
        self._organ = credential.systemid
        self._max_bytes = settings.max_bytes
        self._http = UpstreamHttp(settings, credential)
        self._log = log.bind(upstream=settings.name, credential=credential.name)

    async def send(self, data: bytes, *, kind: str, sender: str, recipients: Sequence[str]) -> str:
        """The recipients are read by the axis from the package itself."""
        headers = self._headers(
            sender,
            type=_type(kind),
            **{
                "hash-edoc": hashlib.sha256(data).hexdigest(),
                "Content-Type": "application/octet-stream",
            },
        )
        call = "sendDocument"
        reply = await self._http.request(
            "POST", "/sendDocument", call=call, cap=LIST_CAP, data=data, headers=headers
        )
        answer = self._answer(call, reply)
        if not isinstance(answer, Mapping):
            raise self._http.garbled(call, reply, "answer is not a JSON object")
        inner = answer.get("data")
        doc_id = text_id(first(answer, "docId", "DocId")) or (
            text_id(first(inner, "docId", "DocId")) if isinstance(inner, Mapping) else None
        )
        if doc_id is None or doc_id == "0":
            raise self._http.garbled(call, reply, "no docId in the answer")
        return doc_id

    async def pending(self, kind: str) -> list[PendingItem]:
        call = f"getPendingDocIds {_type(kind)}"
        reply = await self._http.request(
            "GET",
            "/getPendingDocIds",
            call=call,
            cap=LIST_CAP,
            headers=self._headers(self._organ, type=_type(kind)),
        )
        entries = list_in(self._answer(call, reply), "pendingResult", "docIDs", "docIds", "data")
        if entries is None:
            raise self._http.garbled(call, reply, "no list of pending ids in the answer")
        items = []
        for entry in entries:
            if isinstance(entry, Mapping):
                doc_id = text_id(first(entry, "docId", "DocId", "docid", "id"))
                organ = text_id(first(entry, "organId", "OrganId", "organid"))
            else:
                doc_id, organ = text_id(entry), self._organ
            if doc_id is None:
                raise self._http.garbled(
                    call, reply, f"a pending entry without an id: {repr(entry)[:200]}"
                )
            items.append(PendingItem(_qualified(doc_id, kind), kind, recipient=organ))
        return items

    async def fetch(self, doc_id: str) -> bytes:
        kind, server_id = _split(doc_id)
        call = f"getDocument {doc_id}"
        reply = await self._http.request(
            "POST",
            "/getDocument",
            call=call,
            cap=document_cap(self._max_bytes),
            document=True,
            headers=self._headers(self._organ, type=_type(kind), docid=server_id),
        )
        if reply.ok and looks_like_xml(reply.body):
            if looks_like_html(reply.body) or reply.content_type == "text/html":
                raise self._http.garbled(call, reply, "a web page instead of the package")
            data = reply.body
        else:
            answer = self._answer(call, reply)
            encoded = first(answer, "data", "Data") if isinstance(answer, Mapping) else None
            if not isinstance(encoded, str):
                raise self._http.garbled(call, reply, "neither XML nor JSON with base64 data")
            try:
                data = decode_base64(encoded)
            except ValueError as exc:
                raise self._http.garbled(call, reply, f"data is not base64 ({exc})") from None
            if not looks_like_xml(data):
                raise self._http.garbled(call, reply, "data is base64 of something not XML")
        return data

    async def confirm(self, doc_id: str, *, ok: bool, reason: str | None = None) -> None:
        """``confirmReceived`` either way: the axis has no call for a refusal."""
        kind, server_id = _split(doc_id)
        call = f"confirmReceived {doc_id}"
        reply = await self._http.request(
            "POST",
            "/confirmReceived",
            call=call,
            cap=LIST_CAP,
            headers=self._headers(self._organ, type=_type(kind), docid=server_id),
        )
        if reply.body.strip() or not reply.ok:
            self._answer(call, reply)
        if not ok:
            self._log.warning("bridge.refused_confirmed", doc_id=doc_id, reason=reason)

    async def agencies(self) -> list[UpstreamAgency]:
        call = "getOrganizations"
        reply = await self._http.request(
            "GET",
            "/getOrganizations",
            call=call,
            cap=LIST_CAP,
            params={"organId": self._organ, "domain": self._organ},
            headers=self._headers(self._organ),
        )
        entries = list_in(self._answer(call, reply), "organizations", "data", "items")
        if entries is None:
            raise self._http.garbled(call, reply, "no list of organisations in the answer")
        agencies = [a for a in (agency_from(e) for e in entries) if a is not None]
        if len(agencies) < len(entries):
            self._log.warning("upstream.agencies_without_id", skipped=len(entries) - len(agencies))
        return agencies

    async def close(self) -> None:
        await self._http.close()

    def _headers(self, organ: str, **more: str) -> dict[str, str]:
        return {"organid": organ, "authorization": self._token, **more}

    def _answer(self, call: str, reply: Reply) -> Any:
        """The answer's JSON once it is neither a refusal of our token nor a failure."""
        if reply.status in (401, 403):
            answer = _json_or_none(self._http, call, reply)
            said = _failure(answer) if isinstance(answer, Mapping) else None
            raise self._http.unauthorised(call, reply, said[1] if said else "")
        answer = self._http.json_of(call, reply)
        if isinstance(answer, Mapping):
            failure = _failure(answer)
            if failure is not None:
                trouble, what = failure
                cls = UpstreamUnavailable if trouble else UpstreamRefused
                raise cls(f"{self._http.label}: {call}: {what}")
        if not reply.ok:
            raise self._http.garbled(call, reply, "an HTTP error without the API's failure")
        return answer


def _type(kind: str) -> str:
    if kind not in TYPES:
        raise ValueError(f"kind is 'edoc' or 'status', not {kind!r}")
    return TYPES[kind]


def _qualified(doc_id: str, kind: str) -> str:
    return f"{STATUS_PREFIX}{doc_id}" if kind == "status" else doc_id


def _split(doc_id: str) -> tuple[str, str]:
    """The kind and the server's id of a pending item's id."""
    if doc_id.startswith(STATUS_PREFIX):
        return "status", doc_id[len(STATUS_PREFIX) :]
    return "edoc", doc_id


def _json_or_none(http: UpstreamHttp, call: str, reply: Reply) -> Any:
    try:
        return http.json_of(call, reply)
    except UpstreamGarbled:  # the refusal is what counts; its wording is a bonus
        return None


def _failure(answer: Mapping[str, Any]) -> tuple[bool, str] | None:
    """None when the answer says success, else (the server's own trouble?, what it said)."""
    status, code = answer.get("status"), answer.get("code")
    status_ok = status is None or status is True or str(status).lower() in _OK_STATUSES
    code_ok = code is None or str(code) in _OK_CODES
    if status_ok and code_ok:
        return None
    errors = answer.get("errors")
    said: list[str] = []
    trouble = False
    for error in errors if isinstance(errors, list) else ():
        if isinstance(error, Mapping):
            name = str(first(error, "code", "Code") or "")
            text = str(first(error, "description", "Description", "message") or "")
            trouble = trouble or name.lower() == _SERVER_TROUBLE
            said.append(f"{name}: {text}" if name and text else name or text)
        elif error is not None:
            said.append(str(error))
    message = answer.get("message")
    if isinstance(message, str) and message:
        said.append(message)
    detail = f"status {status}, code {code}" + (f": {'; '.join(said)}" if said else "")
    return trouble, detail[:500]
