"""REST API v1 on each node (aiohttp): the clean way in for agency document systems.

Every request but the OpenAPI description carries ``Authorization: Bearer <token>``; the
node keeps only the token's SHA-256 (docs/http-api.md). Agency credentials act for their
OrganIds only; operator credentials reach the operator endpoints only. Errors are
``application/problem+json`` with our stable error code (docs/errors.md). Bodies are read
up to the node's package cap and no further.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog
from aiohttp import web

from adapters.agency_gate import AgencyGate, Caller
from adapters.console import add_console_routes
from adapters.durable import PLAIN, Disk
from adapters.http_brake import RefusalBrake
from adapters.openapi_doc import openapi
from adapters.rate_limit import TokenBucket
from adapters.sdk_facade import add_sdk_routes
from adapters.spooling import body_deadline, read_or_spool
from exchange.config_http import HttpSettings
from exchange.errors import (
    ContractViolation,
    LienthongError,
    NotDeadLettered,
    NotInMailbox,
    NotTracked,
    NotYours,
    OperatorsOnly,
    PackageTooLarge,
    Quarantined,
    RateLimited,
    RequestInvalid,
    RequestTimeout,
    SenderFault,
    StoreFull,
    SubmitterNotSender,
    TransientFault,
    Unauthenticated,
    ViewerOnly,
)
from exchange.large import Spooled
from exchange.node import Answer
from exchange.store import MailboxEntry

log = structlog.get_logger("lienthong.http")

PROBLEM = "application/problem+json"
GATE, SETTINGS, LIMITS, MAX_BYTES = (
    web.AppKey("gate", AgencyGate),
    web.AppKey("settings", HttpSettings),
    web.AppKey("limits", dict),
    web.AppKey("max_bytes", int),  # the inline cap: what is ever read into memory
)
DISK = web.AppKey("disk", Disk)  # where spooled bodies are written
CAP = web.AppKey("cap", int)  # the package cap: a submission past it is refused
BRAKE = web.AppKey("brake", RefusalBrake)  # holds answers to callers refused again and again
WAIT_S = "lienthong.wait_s"  # a rate-limited request: until its caller may call again
MAX_WAIT_S = 30.0  # the longest a mailbox request waits for mail
STATUS_OF_CODE = {
    RequestInvalid.code: 400,
    Unauthenticated.code: 401,
    OperatorsOnly.code: 403,
    NotYours.code: 403,
    SubmitterNotSender.code: 403,
    NotInMailbox.code: 404,
    NotDeadLettered.code: 404,
    Quarantined.code: 404,
    ViewerOnly.code: 403,
    NotTracked.code: 404,
    PackageTooLarge.code: 413,
    RateLimited.code: 429,
    RequestTimeout.code: 408,
}
ANSWER_STATUS = {"accepted": 201, "duplicate": 200, "conflict": 409, "retry": 503}


def problem(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    body = {"type": f"urn:lienthong:error:{code}", "title": code, "status": status}
    return web.json_response(
        {**body, "code": code, "detail": detail, **extra}, status=status, content_type=PROBLEM
    )


def problem_for(fault: LienthongError) -> web.Response:
    extra: dict[str, Any] = {}
    if isinstance(fault, ContractViolation):
        extra["problems"] = [
            {"line": p.line, "path": p.path, "message": p.message, "code": p.code}
            for p in fault.problems
        ]
    status = STATUS_OF_CODE.get(fault.code, 422 if isinstance(fault, SenderFault) else 503)
    response = problem(status, fault.code, fault.message, **extra)
    if isinstance(fault, StoreFull):
        response.headers["Retry-After"] = str(StoreFull.retry_after_s)
    elif isinstance(fault, RateLimited | TransientFault):
        response.headers["Retry-After"] = "1"
    if isinstance(fault, RequestTimeout):  # the rest of that body is not waited for
        response.force_close()
    return response


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LienthongError as fault:
        brake = request.app[BRAKE]  # a caller refused again and again waits for its answer
        if isinstance(fault, Unauthenticated):
            await brake.unauthenticated(request.remote)
        elif isinstance(fault, RateLimited):
            await brake.rate_limited(request.get(WAIT_S, 1.0))
        return problem_for(fault)


def _digest(token: str) -> str:
    # a header's bytes that are not UTF-8 come as surrogates: hashed as sent, never a 500
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def authenticate(request: web.Request) -> tuple[str, Caller | None]:
    """(credential name, the agency caller or None for an operator); raises 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send Authorization: Bearer <token>")
    settings, digest = request.app[SETTINGS], _digest(token.strip())
    for client in settings.clients.values():
        if client.token_sha256 and hmac.compare_digest(client.token_sha256, digest):
            return client.name, Caller(client.name, client.credential)
    for operator in settings.operators.values():
        if hmac.compare_digest(operator.token_sha256, digest):
            return operator.name, None
    for link in settings.links.values():  # a child node's: large-package transfers only
        if hmac.compare_digest(link.token_sha256, digest):
            raise OperatorsOnly("a child node's link credential opens /v1/links/ only")
    raise Unauthenticated("this token belongs to no credential of this node")


def _limit(request: web.Request, name: str) -> None:
    settings = request.app[SETTINGS]
    client = settings.clients.get(name)
    rate = client.rate_per_s if client else 20.0
    bucket = request.app[LIMITS].setdefault(name, TokenBucket(rate, max(1.0, 2 * rate)))
    if not bucket.take():
        request[WAIT_S] = bucket.wait_s()
        raise RateLimited(f"more than {rate:g} requests a second for {name}")


def agency(request: web.Request) -> Caller:
    name, caller = authenticate(request)
    _limit(request, name)
    if caller is None:
        raise OperatorsOnly("an operator credential cannot act for an agency")
    return caller


def operator(request: web.Request) -> str:
    name, caller = authenticate(request)
    _limit(request, name)
    if caller is not None:
        raise OperatorsOnly("this endpoint is for operators")
    return name


async def read_body(request: web.Request) -> bytes:
    """The body, read up to the package cap: refused past it without reading further, and
    refused if it does not arrive within the body timeout."""
    cap = request.app[MAX_BYTES]
    if request.content_length is not None and request.content_length > cap:
        raise PackageTooLarge(f"the body is {request.content_length} bytes; the cap is {cap}")
    chunks, size = [], 0
    async with body_deadline(request.app[SETTINGS].body_timeout_s, request.content_length or cap):
        async for chunk in request.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise PackageTooLarge(f"the body is over the cap of {cap} bytes")
            chunks.append(chunk)
    return b"".join(chunks)


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    try:
        value = float(raw) if raw is not None else default
    except ValueError:
        value = math.nan
    if not low <= value <= high:
        raise RequestInvalid(f"query {name!r} must be a number from {low:g} to {high:g}")
    return value


def entry_json(entry: MailboxEntry) -> dict[str, Any]:
    return {
        "message_id": entry.message_id,
        "sender": entry.sender,
        "document_id": entry.document_id,
        "kind": entry.kind,
        "delivered_at": entry.delivered_at.isoformat(),
        "fetched_at": entry.fetched_at.isoformat() if entry.fetched_at else None,
    }


def answer_response(answer: Answer) -> web.Response:
    status = ANSWER_STATUS.get(answer.outcome)
    if status is None:  # refused, dead-lettered
        code = answer.code or "package.refused"
        return problem(
            STATUS_OF_CODE.get(code, 422),
            code,
            answer.reason or answer.outcome,
            outcome=answer.outcome,
        )
    return web.json_response(
        {k: v for k, v in answer.__dict__.items() if v is not None}, status=status
    )


# --- handlers -----------------------------------------------------------------------


async def submit(request: web.Request) -> web.Response:
    caller = agency(request)
    as_organ = request.headers.get("Lienthong-As")
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 200:
        raise RequestInvalid("Idempotency-Key is 1 to 200 characters")
    gate = request.app[GATE]
    data = await read_or_spool(
        request,
        inline=request.app[MAX_BYTES],
        cap=request.app[CAP],
        folder=gate.node.store.spool_folder(),
        disk=request.app[DISK],
        timeout_s=request.app[SETTINGS].body_timeout_s,
    )
    if isinstance(data, Spooled):  # a large package: streamed to a file, never held here
        return answer_response(await gate.submit_spooled(caller, data, as_organ, key=key))
    answer = await gate.submit(caller, data, as_organ, key=key)
    if answer.outcome == "refused" and answer.code == ContractViolation.code:
        try:  # the node's answer names the first problem; the caller gets them all
            await gate.validate(caller, data)
        except ContractViolation as every:
            return problem_for(every)
    return answer_response(answer)


async def validate(request: web.Request) -> web.Response:
    caller = agency(request)
    admitted = await request.app[GATE].validate(caller, await read_body(request))
    package = admitted.package
    return web.json_response(
        {
            "valid": True,
            "kind": package.kind.value,
            "sender": package.sender.organ_id,
            "recipients": [o.organ_id for o in package.recipients],
            "document_id": package.document_id,
            "level": package.level.value,
            "notes": list(package.notes),
        }
    )


async def mailbox(request: web.Request) -> web.Response:
    caller = agency(request)
    state = request.query.get("state", "pending")
    if state not in ("pending", "all"):
        raise RequestInvalid("query 'state' is 'pending' or 'all'")
    limit = int(_number(request, "limit", 100, 1, 1000))
    offset = int(_number(request, "offset", 0, 0, 10**9))
    wait = _number(request, "wait", 0, 0, MAX_WAIT_S)
    entries = await request.app[GATE].mailbox(
        caller,
        request.match_info["organ"],
        pending=state == "pending",
        limit=limit,
        offset=offset,
        wait_s=wait,
    )
    return web.json_response(
        {"items": [entry_json(e) for e in entries], "limit": limit, "offset": offset}
    )


async def package(request: web.Request) -> web.StreamResponse:
    caller = agency(request)
    gate = request.app[GATE]
    entry = await gate.package(caller, request.match_info["organ"], request.match_info["id"])
    headers = {
        "Lienthong-Message-Id": entry.message_id,
        "Lienthong-Sender": entry.sender,
        "Lienthong-Kind": entry.kind,
        "Digest": f"sha-256={entry.digest}",
    }
    path = await gate.package_file(entry)
    if path is not None:  # streamed from the file, and resumable with Range
        headers["Content-Type"] = "application/xml"
        return web.FileResponse(path, headers=headers)
    return web.Response(
        body=await gate.package_bytes(entry), content_type="application/xml", headers=headers
    )


async def acknowledge(request: web.Request) -> web.Response:
    caller = agency(request)
    organ, message_id = request.match_info["organ"], request.match_info["id"]
    gate = request.app[GATE]
    await gate.package(caller, organ, message_id)  # 404 unless it is that agency's mail
    marked = await gate.acknowledge(caller, organ, [message_id])
    return web.json_response({"message_id": message_id, "acknowledged": True, "now": marked})


async def sent(request: web.Request) -> web.Response:
    caller = agency(request)
    view = await request.app[GATE].status(
        caller, request.match_info["organ"], request.match_info["id"]
    )
    return web.json_response(view.to_json())


async def directory(request: web.Request) -> web.Response:
    agency(request)
    return web.json_response({"agencies": request.app[GATE].directory()})


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi(request.app[MAX_BYTES]))


ROUTES: Mapping[tuple[str, str], Callable[[web.Request], Awaitable[web.StreamResponse]]] = {
    ("POST", "/v1/packages"): submit,
    ("POST", "/v1/validate"): validate,
    ("GET", "/v1/agencies/{organ}/mailbox"): mailbox,
    ("GET", "/v1/agencies/{organ}/packages/{id}"): package,
    ("POST", "/v1/agencies/{organ}/packages/{id}/ack"): acknowledge,
    ("GET", "/v1/agencies/{organ}/sent/{id}"): sent,
    ("GET", "/v1/directory"): directory,
    ("GET", "/v1/openapi.json"): openapi_json,
}


def build_app(
    gate: AgencyGate,
    settings: HttpSettings,
    *,
    max_bytes: int,
    inline_bytes: int | None = None,
    extra: Callable[[web.Application], None] | None = None,
    disk: Disk = PLAIN,
) -> web.Application:
    """``max_bytes``: the package cap; ``inline_bytes`` (default: the same): above it a
    submission is spooled to a file and travels by claim check."""
    inline = min(max_bytes, inline_bytes or max_bytes)
    app = web.Application(
        middlewares=[errors],
        client_max_size=inline + 1,
        # a connection that has not sent a whole request head within this is closed
        # (aiohttp's keep-alive timer runs from the connection's start, and between requests)
        # and a refused body is drained at most that long (aiohttp's lingering) before it
        handler_args={
            "keepalive_timeout": settings.header_timeout_s,
            "lingering_time": min(10.0, settings.header_timeout_s),
        },
    )
    app[GATE], app[SETTINGS], app[LIMITS], app[MAX_BYTES] = gate, settings, {}, inline
    app[CAP], app[DISK] = max_bytes, disk
    app[BRAKE] = RefusalBrake(settings.refusal_hold_s)
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
    if extra is not None:  # the operator's endpoints (adapters/ops_http.py)
        extra(app)
    add_console_routes(app)  # the operator console's files, /ops/ (docs/console.md)
    if any(c.systemid for c in settings.clients.values()):  # the national-axis SDK's face
        add_sdk_routes(
            app,
            gate,
            settings.clients,
            max_bytes=inline,
            body_timeout_s=settings.body_timeout_s,
            brake=app[BRAKE],
        )
    return app
