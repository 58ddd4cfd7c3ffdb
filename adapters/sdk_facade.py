"""The national-axis SDK facade: a QLVB product built on the SDK (``SDKVXP``) connects to
its home node by changing only its endpoint address (docs/sdk-facade.md).

Every call is authenticated from its XroadVnpt- headers (exchange/xroad.py) and acts only
on the signed values, then goes through the agency gate, which checks each agency named
against the calling system's OrganIds. Answers are the SDK's JSON: ``status`` "OK" or
"FAIL", ``ErrorCode`` ("0" on success) and ``ErrorDesc`` led by our stable error code.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import structlog
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from adapters.agency_gate import AgencyGate, Caller
from adapters.http_brake import RefusalBrake
from adapters.rate_limit import TokenBucket
from adapters.spooling import body_deadline
from exchange import xroad
from exchange.config_http import HttpClient
from exchange.errors import (
    ConfigurationError,
    LienthongError,
    NotInMailbox,
    NotTracked,
    NotYours,
    PackageTooLarge,
    RateLimited,
    RequestTimeout,
    SdkFileHashMismatch,
    SdkHeaderMismatch,
    SdkRequestInvalid,
    SdkSignatureInvalid,
    SdkSystemUnknown,
    SdkTimestampInvalid,
    SenderFault,
    TransientFault,
)
from exchange.store import MailboxEntry
from exchange.xroad import SignedRequest

log = structlog.get_logger("lienthong.sdk")

MULTIPART_SLACK = 64 * 1024  # a multipart body's framing beyond the file itself
MAX_JSON_BODY = 64 * 1024  # the JSON body of a call (the SDK sends a few fields)
CHUNK = 64 * 1024
PAGE = 500  # mailbox entries read at a time
MAX_LISTED = 1000  # rows in one getReceivedEdocList answer; the rest come once these are done
MAX_COUNTED = 10_000  # countReceive* counts up to this

_UNAUTHENTICATED = (
    SdkSystemUnknown,
    SdkSignatureInvalid,
    SdkHeaderMismatch,
    SdkTimestampInvalid,
    SdkFileHashMismatch,
)
Operation = Callable[[web.Request, Caller, SignedRequest], Awaitable[web.StreamResponse]]


def _json(body: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=partial(json.dumps, ensure_ascii=False))


def http_status(error: LienthongError, *, raw: bool = False) -> int:
    """The HTTP status of a refusal. A request refused before its operation runs gets a
    4xx; an operation's own answer (an unknown document) is read by the SDK as JSON on 200,
    except where success would be raw bytes (``raw``: downloadEdoc)."""
    if isinstance(error, _UNAUTHENTICATED):
        return 401
    if isinstance(error, NotYours):
        return 403
    if isinstance(error, PackageTooLarge):
        return 413
    if isinstance(error, RateLimited):
        return 429
    if isinstance(error, RequestTimeout):
        return 408
    if isinstance(error, NotInMailbox | NotTracked):
        return 404 if raw else 200
    if isinstance(error, SenderFault):
        return 400
    if isinstance(error, TransientFault):
        return 503
    return 500


class SdkFacade:
    """The endpoints of one node's facade; ``add_sdk_routes`` mounts them."""

    def __init__(
        self,
        gate: AgencyGate,
        clients: Mapping[str, HttpClient],
        *,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
        body_timeout_s: float = 60.0,
        brake: RefusalBrake | None = None,
    ) -> None:
        self._gate = gate
        self._brake = brake or RefusalBrake(0)  # off unless the HTTP face gives its own
        self._max_bytes = max_bytes
        self._body_timeout_s = body_timeout_s
        self._systems: dict[str, HttpClient] = {}
        self._buckets: dict[str, TokenBucket] = {}
        for client in clients.values():
            if client.systemid is None or client.hmac_secret is None:
                continue  # a REST-only client
            if client.systemid in self._systems:
                raise ConfigurationError(
                    f"http clients {self._systems[client.systemid].name} and {client.name} "
                    f"share the systemid {client.systemid}"
                )
            self._systems[client.systemid] = client
            rate = client.rate_per_s
            self._buckets[client.name] = TokenBucket(rate, max(1.0, 2 * rate), clock)

    def endpoint(self, name: str, operation: Operation, *, raw: bool = False) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.monotonic()
            client: HttpClient | None = None
            code = None
            wait = 0.0
            try:
                client, signed = self._authenticate(request)
                bucket = self._buckets[client.name]
                if not bucket.take():
                    wait = bucket.wait_s()
                    raise RateLimited(
                        f"{client.name} may call {client.rate_per_s:g} times a second; "
                        f"call again in {wait:.1f} s"
                    )
                response = await operation(request, Caller(client.name, client.credential), signed)
            except LienthongError as error:
                code = error.code
                response = _json(xroad.refusal(error), http_status(error, raw=raw))
                if isinstance(error, _UNAUTHENTICATED):
                    response.headers["WWW-Authenticate"] = "XroadVnpt"
                if isinstance(error, RateLimited):
                    response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
                if isinstance(error, RequestTimeout):  # the rest of that body is not waited for
                    response.force_close()
                if isinstance(error, _UNAUTHENTICATED):  # again and again: held (http_brake)
                    await self._brake.unauthenticated(request.remote)
                elif isinstance(error, RateLimited):
                    await self._brake.rate_limited(wait)
            log.info(
                "sdk.request",
                op=name,
                client=client.name if client else None,
                system=None if client else request.headers.get("XroadVnpt-systemid", "")[:64],
                http=response.status,
                code=code,
                ms=round((time.monotonic() - started) * 1000),
            )
            return response

        return handle

    def _authenticate(self, request: web.Request) -> tuple[HttpClient, SignedRequest]:
        headers = xroad.xroad_headers(request.raw_headers)
        systemid = xroad.claimed_system(headers)
        client = self._systems.get(systemid)
        if client is None or client.hmac_secret is None:
            raise SdkSystemUnknown(f"no system {systemid!r} calls this node")
        return client, xroad.verify_request(headers, systemid, client.hmac_secret)

    # --- what the calling system's agencies are here ---------------------------------------

    def _organs_here(self, caller: Caller) -> list[str]:
        hosted = self._gate.node.settings.hosted
        organs = caller.credential.organs
        return sorted(hosted if organs is None else organs & hosted)

    async def _pending(self, caller: Caller, kind: str, most: int) -> list[MailboxEntry]:
        found: list[MailboxEntry] = []
        for organ in self._organs_here(caller):
            offset = 0
            while len(found) < most:
                page = await self._gate.mailbox(
                    caller, organ, pending=True, limit=PAGE, offset=offset
                )
                found += [e for e in page if e.kind == kind][: most - len(found)]
                if len(page) < PAGE:
                    break
                offset += PAGE
        return found

    async def _holding(self, caller: Caller, doc_id: str) -> list[MailboxEntry]:
        """The caller's agencies' mailbox entries of a package (one per agency holding it)."""
        found = []
        for organ in self._organs_here(caller):
            try:
                found.append(await self._gate.package(caller, organ, doc_id))
            except NotInMailbox:
                continue
        if not found:
            raise NotInMailbox(f"no package {doc_id} in the mailbox of this system's agencies")
        return found

    # --- request bodies ------------------------------------------------------------------

    async def _json_body(self, request: web.Request, signed: SignedRequest) -> None:
        """A JSON body may repeat the signed fields, not contradict them; nothing else
        in it is read."""
        if not request.body_exists:
            return
        raw = bytearray()
        async with body_deadline(self._body_timeout_s):
            while chunk := await request.content.read(CHUNK):
                raw += chunk
                if len(raw) > MAX_JSON_BODY:
                    raise SdkRequestInvalid(f"the JSON body is over {MAX_JSON_BODY} bytes")
        if not raw.strip():
            return
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise SdkRequestInvalid("the body is not JSON") from exc
        if not isinstance(body, dict):
            raise SdkRequestInvalid("the body is not a JSON object")
        xroad.check_body(signed, body)

    async def _file_doc(self, request: web.Request) -> bytes:
        """The one multipart part ``file_doc``, refused past ``max_bytes`` before more
        than that is held."""
        if (request.content_length or 0) > self._max_bytes + MULTIPART_SLACK:
            raise PackageTooLarge(f"the request is over the {self._max_bytes}-byte cap")
        if not request.content_type.startswith("multipart/"):
            raise SdkRequestInvalid(
                f"sendEdoc takes multipart/form-data, not {request.content_type}"
            )
        data = bytearray()
        try:
            expected = request.content_length or self._max_bytes
            async with body_deadline(self._body_timeout_s, expected):
                reader = await request.multipart()
                part = await reader.next()
                if not isinstance(part, BodyPartReader) or part.name != "file_doc":
                    raise SdkRequestInvalid("the first multipart part is not file_doc")
                while chunk := await part.read_chunk(CHUNK):
                    if len(data) + len(chunk) > self._max_bytes:
                        raise PackageTooLarge(f"file_doc is over the {self._max_bytes}-byte cap")
                    data += chunk
                if await reader.next() is not None:
                    raise SdkRequestInvalid("sendEdoc takes one multipart part, file_doc")
        except (ValueError, HttpProcessingError) as exc:
            raise SdkRequestInvalid(f"the multipart body does not parse: {exc}") from exc
        return bytes(data)

    # --- the operations ----------------------------------------------------------------------

    async def send_edoc(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        sender = signed.require("from")
        signed.require("messagetype", xroad.MESSAGE_TYPES)  # the package itself says which
        self._gate.check(caller, sender)  # before the body is read
        data = await self._file_doc(request)
        xroad.check_file(signed, data)
        answer = await self._gate.submit(caller, data, as_organ=sender)
        log.info(
            "sdk.send",
            client=caller.name,
            sender=sender,
            outcome=answer.outcome,
            message_id=answer.message_id,
            code=answer.code,
        )
        return _json(xroad.submitted(answer))

    async def received_list(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        await self._json_body(request, signed)
        kind = signed.require("messagetype", xroad.MESSAGE_TYPES)
        entries = await self._pending(caller, kind, MAX_LISTED)
        return _json(xroad.ok(data=[xroad.received_item(e) for e in entries]))

    async def get_edoc(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        await self._json_body(request, signed)
        entry = (await self._holding(caller, signed.require("docId")))[0]
        data = await self._gate.package_bytes(entry)
        return _json(xroad.ok(data=base64.b64encode(data).decode("ascii")))

    async def download_edoc(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        entry = (await self._holding(caller, signed.require("docId")))[0]
        data = await self._gate.package_bytes(entry)
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": f'attachment; filename="{entry.message_id}.edxml"'},
        )

    async def update_status(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        """``done`` marks the package fetched (the evidence goes back to its origin);
        ``fail`` and ``processing`` are logged and leave it pending, listed again."""
        await self._json_body(request, signed)
        doc_id = signed.require("docId")
        status = signed.require("status", xroad.UPDATE_STATUSES)
        marked = 0
        for entry in await self._holding(caller, doc_id):
            if status == "done":
                marked += await self._gate.acknowledge(caller, entry.organ_id, [doc_id])
            log.info(
                "sdk.update_status",
                client=caller.name,
                organ=entry.organ_id,
                message_id=doc_id,
                status=status,
                marked=marked,
            )
        return _json(xroad.ok())

    async def sent_list(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        """One package (or document) the caller's agencies sent, by its DocId or its
        DocumentId: a row per recipient. Listing by date is not offered."""
        await self._json_body(request, signed)
        ident = signed.get("docId")
        if not ident:
            raise SdkRequestInvalid("getSentEdocList needs the docId of what was sent")
        organs = caller.credential.organs
        for organ in sorted(self._gate.node.settings.hosted if organs is None else organs):
            try:
                view = await self._gate.status(caller, organ, ident)
            except NotTracked:
                continue
            return _json(xroad.ok(data=xroad.sent_items(view)))
        raise NotTracked(f"this system's agencies sent no document or package {ident!r} here")

    async def agencies(
        self, request: web.Request, caller: Caller, signed: SignedRequest
    ) -> web.StreamResponse:
        await self._json_body(request, signed)
        topology = self._gate.node.settings.topology
        redirects = topology.redirects if topology is not None else {}
        return _json(xroad.ok(data=xroad.agency_rows(self._gate.directory(), redirects)))

    def counter(self, kind: str) -> Operation:
        async def count(
            request: web.Request, caller: Caller, signed: SignedRequest
        ) -> web.StreamResponse:
            return _json(xroad.ok(count=len(await self._pending(caller, kind, MAX_COUNTED))))

        return count


def add_sdk_routes(
    app: web.Application,
    gate: AgencyGate,
    clients: Mapping[str, HttpClient],
    *,
    prefix: str = "/vdxp",
    max_bytes: int,
    clock: Callable[[], float] = time.monotonic,
    body_timeout_s: float = 60.0,
    brake: RefusalBrake | None = None,
) -> None:
    """Mount the SDK's endpoints under ``prefix`` (the QLVB's configured endpoint).

    ``clients`` are the node's ``[http.clients]``; those with a systemid and an HMAC secret
    may call. ``max_bytes`` is the node's ``max_package_bytes``. ``clock`` drives the rate
    limits (tests move it themselves)."""
    facade = SdkFacade(
        gate,
        clients,
        max_bytes=max_bytes,
        clock=clock,
        body_timeout_s=body_timeout_s,
        brake=brake,
    )
    base = prefix.rstrip("/")
    post: dict[str, Operation] = {
        "sendEdoc": facade.send_edoc,
        "getReceivedEdocList": facade.received_list,
        "getEdoc": facade.get_edoc,
        "updateStatus": facade.update_status,
        "getSentEdocList": facade.sent_list,
        "getAgenciesList": facade.agencies,
    }
    get: dict[str, Operation] = {
        "countReceiveEdoc": facade.counter("edoc"),
        "countReceiveStatus": facade.counter("status"),
    }
    for name, operation in post.items():
        app.router.add_post(f"{base}/{name}", facade.endpoint(name, operation))
    for name, operation in get.items():
        app.router.add_get(f"{base}/{name}", facade.endpoint(name, operation))
    app.router.add_get(
        f"{base}/downloadEdoc",
        facade.endpoint("downloadEdoc", facade.download_edoc, raw=True),
    )
