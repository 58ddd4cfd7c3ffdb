"""What the provincial upstream clients (adapters/upstream_bkav.py,
adapters/upstream_langson.py) do the same way over HTTP: one aiohttp session per client,
opened on first use; a deadline on every call (``settings.deadline_s``, connect to last
byte); bounded reads; no redirects followed (a redirect would carry our credentials to
another address); and what went wrong translated into the upstream errors:

- no answer (connection refused or reset, name not found, deadline passed) or HTTP 5xx:
  ``UpstreamUnavailable``;
- HTTP 401 or 403: ``UpstreamUnauthorised``;
- an answer that is not JSON, or JSON of the wrong shape: ``UpstreamGarbled``, with the
  first 200 bytes;
- an answer larger than its cap: a list or an acknowledgement ``UpstreamGarbled``; a
  document ``PackageTooLarge``, a sender's fault, since no reading of it can be within
  ``max_bytes``. Below the cap the bytes are returned whatever their size: the caller
  (adapters/bridge.py) refuses a package past ``max_bytes`` and tells the upstream so.

Messages name the upstream, the credential and the call, never a secret, token or body
beyond that first 200 bytes. Also here: reading the tolerant shapes both protocols share
(ids that may be numbers, lists that may be wrapped, agency fields under several names).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from exchange.errors import (
    PackageTooLarge,
    UpstreamGarbled,
    UpstreamUnauthorised,
    UpstreamUnavailable,
)
from exchange.upstream import UpstreamAgency, UpstreamCredential, UpstreamSettings

LIST_CAP = 32 * 1024 * 1024  # a list or an acknowledgement is never larger
PREVIEW = 200  # bytes of a garbled answer quoted in the error
CHUNK = 64 * 1024
_BOM = b"\xef\xbb\xbf"


def document_cap(max_bytes: int) -> int:
    """The most read for one document: a package of ``max_bytes`` may come base64-encoded
    inside JSON (4/3 of it), plus room for the wrapper."""
    return max_bytes * 4 // 3 + 64 * 1024


@dataclass(frozen=True)
class Reply:
    """An answer that arrived: any status below 500, the body read to its end."""

    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class UpstreamHttp:
    """One credential's HTTP session with one upstream."""

    def __init__(self, settings: UpstreamSettings, credential: UpstreamCredential) -> None:
        self.endpoint = settings.endpoint.rstrip("/")
        self.label = f"{settings.protocol} upstream {settings.name!r} ({credential.name})"
        self.deadline_s = settings.deadline_s
        self._timeout = aiohttp.ClientTimeout(total=settings.deadline_s)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self, method: str, path: str, *, call: str, cap: int, document: bool = False, **kwargs: Any
    ) -> Reply:
        """One call: the answer unless nothing usable came back (5xx, none in time)."""
        try:
            async with self._open().request(
                method,
                f"{self.endpoint}{path}",
                timeout=self._timeout,
                allow_redirects=False,
                **kwargs,
            ) as reply:
                if reply.status >= 500:
                    raise UpstreamUnavailable(f"{self.label}: {call}: HTTP {reply.status}")
                body = await self._read(reply, call, cap, document)
                return Reply(reply.status, body, reply.content_type)
        except TimeoutError as exc:
            raise UpstreamUnavailable(
                f"{self.label}: {call}: no answer within {self.deadline_s:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"{self.label}: {call}: {_describe(exc)}") from exc

    async def _read(
        self, reply: aiohttp.ClientResponse, call: str, cap: int, document: bool
    ) -> bytes:
        def too_large() -> Exception:
            what = f"{self.label}: {call}: answer larger than {cap} bytes"
            return PackageTooLarge(what) if document else UpstreamGarbled(what)

        if reply.content_length is not None and reply.content_length > cap:
            raise too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in reply.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > cap:
                raise too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    # --- judging an answer -----------------------------------------------------------

    def unauthorised(self, call: str, reply: Reply, detail: str = "") -> UpstreamUnauthorised:
        said = f": {detail}" if detail else ""
        return UpstreamUnauthorised(
            f"{self.label}: {call}: credentials refused (HTTP {reply.status}){said}"
        )

    def garbled(self, call: str, reply: Reply, why: str) -> UpstreamGarbled:
        return UpstreamGarbled(
            f"{self.label}: {call}: {why} (HTTP {reply.status}, {reply.content_type or 'no type'}"
            f", starts {reply.body[:PREVIEW]!r})"
        )

    def json_of(self, call: str, reply: Reply) -> Any:
        """The answer's JSON, or ``UpstreamGarbled``."""
        try:
            return json.loads(reply.body)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the stack
            raise self.garbled(call, reply, "answer is not JSON") from None


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port} ({exc.os_error.strerror or exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --- tolerant readings -------------------------------------------------------------


def first(obj: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` that ``obj`` has and is not null."""
    for name in names:
        value = obj.get(name)
        if value is not None:
            return value
    return None


def text_id(value: Any) -> str | None:
    """An id as text: a non-empty string, or a whole number (Java ``long`` ids)."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def list_in(answer: Any, *keys: str) -> list[Any] | None:
    """The list an answer carries: itself, or under one of ``keys`` at most two deep
    (``{"data": [...]}``, ``{"data": {"items": [...]}}``)."""
    if isinstance(answer, list):
        return answer
    if not isinstance(answer, Mapping):
        return None
    for key in keys:
        value = answer.get(key)
        if isinstance(value, list):
            return value
    for key in keys:
        value = answer.get(key)
        if isinstance(value, Mapping):
            inner = list_in(value, *keys)
            if inner is not None:
                return inner
    return None


def looks_like_xml(data: bytes) -> bool:
    """Begins with ``<`` once a UTF-8 byte-order mark and white space are set aside."""
    return data.removeprefix(_BOM).lstrip().startswith(b"<")


def looks_like_html(data: bytes) -> bool:
    """A web page (a proxy's, a login form): never an edXML package."""
    head = data.removeprefix(_BOM).lstrip()[:64].lower()
    return head.startswith((b"<!doctype html", b"<html"))


def decode_base64(text: str) -> bytes:
    """Strict base64 (line breaks allowed, as Java's MIME encoder writes them): raises
    ``ValueError`` on anything else."""
    compact = re.sub(r"\s+", "", text)
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from None


_ID_FIELDS = ("organId", "OrganId", "code", "organCode", "domain", "id")
_NAME_FIELDS = ("name", "organName", "organizationName", "fullName")
_OLD_FIELDS = ("oldCode", "oldCodes", "old_code")
_PARENT_FIELDS = ("parentCode", "pcode", "parentId", "pid", "parent")
_MAIL_FIELDS = ("mail", "email")


def agency_from(item: Any) -> UpstreamAgency | None:
    """One entry of an agency list, whatever its fields are called; None without an id.
    ``oldCode`` may be one code, several separated by commas, or a list."""
    if not isinstance(item, Mapping):
        return None
    organ_id = text_id(first(item, *_ID_FIELDS))
    if organ_id is None:
        return None
    old = first(item, *_OLD_FIELDS)
    if isinstance(old, str):
        olds = re.split(r"[,;\s]+", old)
    elif isinstance(old, list):
        olds = [o for o in (text_id(o) for o in old) if o]
    else:
        olds = []
    name = first(item, *_NAME_FIELDS)
    mail = first(item, *_MAIL_FIELDS)
    return UpstreamAgency(
        organ_id=organ_id,
        name=name.strip() if isinstance(name, str) else "",
        old_codes=tuple(dict.fromkeys(o for o in olds if o and o != organ_id)),
        parent=text_id(first(item, *_PARENT_FIELDS)),
        mail=mail.strip() if isinstance(mail, str) else "",
    )
