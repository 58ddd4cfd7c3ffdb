"""The operator's endpoints on a node's HTTP face (docs/operations.md): ``/healthz`` and
``/readyz`` for a supervisor, ``/status`` and ``/metrics`` for people and Prometheus, and
``/v1/ops/...`` for the console and ``lienthong ops``.

Everything but the two probes needs an operator credential; a ``viewer`` reads, an
``operator`` also acts. Every action is in the node's evidence log with who and why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from adapters.http_api import SETTINGS, operator, read_body
from adapters.metrics import NodeMetrics
from adapters.ops_status import OpsView
from exchange.errors import NotTracked, RequestInvalid, ViewerOnly
from exchange.reporting import VIETNAM
from exchange.status_view import document_status

OPS = web.AppKey("ops", OpsView)
CACHE = web.AppKey("status_cache", dict)
STATUS_FRESH_S = 2.0  # a console polling every 5 s and a Prometheus scrape share one read
MAX_NOTE = 500
MAX_SEARCH = 200


def viewer(request: web.Request) -> str:
    return operator(request)


def acting(request: web.Request) -> str:
    """The operator's name, if this credential may act."""
    name = operator(request)
    if not request.app[SETTINGS].operators[name].may_act:
        raise ViewerOnly(f"{name} is a viewer: it may look, not act")
    return name


async def _note(request: web.Request) -> str | None:
    body = await read_body(request)
    if not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        raise RequestInvalid('the body is JSON: {"note": "why"}') from None
    note = data.get("note") if isinstance(data, dict) else None
    if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
        raise RequestInvalid(f"'note' is text of at most {MAX_NOTE} characters")
    return note or None


async def current_status(request: web.Request) -> dict[str, Any]:
    cache = request.app[CACHE]
    if cache.get("at", 0.0) + STATUS_FRESH_S < time.monotonic():
        cache["view"] = await request.app[OPS].status()
        cache["at"] = time.monotonic()
    view: dict[str, Any] = cache["view"]
    return view


def forget_status(request: web.Request) -> None:
    request.app[CACHE].clear()


# --- probes ---------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "node": request.app[OPS].node.settings.node_id})


async def readyz(request: web.Request) -> web.Response:
    ops = request.app[OPS]
    store, _ = await ops.probe_store()
    broker = await ops.probe_broker()
    ok = store.ok and broker.ok
    return web.json_response(
        {
            "ok": ok,
            "node": ops.node.settings.node_id,
            "store": store.json(),
            "broker": broker.json(),
            "draining": ops.node.drain is not None,
        },
        status=200 if ok else 503,
    )


# --- views ------------------------------------------------------------------------------


async def status(request: web.Request) -> web.Response:
    viewer(request)
    return web.json_response(await current_status(request))


async def metrics(request: web.Request) -> web.Response:
    viewer(request)
    observer = request.app[OPS].node.observer
    if not isinstance(observer, NodeMetrics):
        raise NotTracked("this node keeps no metrics")
    observer.update_from_status(await current_status(request))
    body, content_type = observer.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def whoami(request: web.Request) -> web.Response:
    name = viewer(request)
    role = request.app[SETTINGS].operators[name].role
    return web.json_response(
        {"name": name, "role": role, "node": request.app[OPS].node.settings.node_id}
    )


async def dead_letters(request: web.Request) -> web.Response:
    viewer(request)
    return web.json_response({"items": await request.app[OPS].dead_letters()})


async def quarantine(request: web.Request) -> web.Response:
    viewer(request)
    return web.json_response({"items": await request.app[OPS].quarantined()})


async def failed(request: web.Request) -> web.Response:
    viewer(request)
    return web.json_response({"items": await request.app[OPS].failed()})


async def overdue(request: web.Request) -> web.Response:
    viewer(request)
    ops = request.app[OPS]
    return web.json_response({"items": await ops.overdue(ops.now())})


def _moment(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise RequestInvalid(f"query {name!r} is a date or time, e.g. 2026-11-29T08:00") from None
    return when if when.tzinfo else when.replace(tzinfo=VIETNAM)  # as people there say it


async def search(request: web.Request) -> web.Response:
    viewer(request)
    store = request.app[OPS].node.store
    document_id = request.query.get("document_id", "").strip()
    party = request.query.get("party", "").strip() or None
    since, until = _moment(request, "since"), _moment(request, "until")
    if until is not None and len(request.query.get("until", "")) <= 10:
        until += timedelta(days=1)  # a date alone: the whole of that day
    if document_id:
        events = list(await store.events_about(document_id=document_id))
    elif party or since or until:
        entries = await store.log_entries(party=party, since=since, until=until, limit=1000)
        events = [e.event for e in entries]
    else:
        raise RequestInvalid("search by document_id, party, or since/until")
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        if not event.message_id or event.message_id.startswith("sha256:"):
            continue
        row = found.setdefault(
            event.message_id,
            {
                "message_id": event.message_id,
                "document_id": event.document_id,
                "sender": event.sender,
                "at": event.at.isoformat(),
                "events": [],
            },
        )
        row["events"].append(
            {
                "kind": event.kind.value,
                "at": event.at.isoformat(),
                "node": event.node,
                "party": event.party,
            }
        )
    items = sorted(found.values(), key=lambda r: str(r["at"]), reverse=True)[:MAX_SEARCH]
    for item in items:
        item["kind"] = item["events"][-1]["kind"]
        item["event"] = item["kind"]
    return web.json_response({"items": items})


async def package(request: web.Request) -> web.Response:
    viewer(request)
    ops = request.app[OPS]
    node = ops.node
    view = await document_status(
        node.store,
        request.match_info["id"],
        here=node.settings.node_id,
        topology=node.settings.topology,
        now=ops.now(),
        deadlines=node.settings.deadlines,
    )
    if view is None:
        raise NotTracked(f"no package or document {request.match_info['id']!r} at this node")
    return web.json_response(view.to_json())


# --- actions -----------------------------------------------------------------------------


def _letter_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise RequestInvalid(f"a dead letter's id is a number, not {raw!r}")
    return int(raw)


async def replay(request: web.Request) -> web.Response:
    name = acting(request)
    note = await _note(request)
    letter = _letter_id(request)
    target = await request.app[OPS].node.replay_dead_letter(letter, by=name, note=note)
    forget_status(request)
    return web.json_response({"id": letter, "replayed": True, "to": target})


async def purge(request: web.Request) -> web.Response:
    name = acting(request)
    note = await _note(request)
    letter = _letter_id(request)
    made = await request.app[OPS].node.purge_dead_letter(letter, by=name, note=note)
    forget_status(request)
    return web.json_response({"id": letter, "purged": True, "failed_receipts": made})


def _decide(decision: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def decide(request: web.Request) -> web.Response:
        name = acting(request)
        note = await _note(request)
        message_id = request.match_info["id"]
        held = await request.app[OPS].node.decide_quarantined(
            message_id, decision, by=name, note=note
        )
        forget_status(request)
        return web.json_response(
            {"message_id": held.message_id, "decision": held.decision, "by": held.decided_by}
        )

    return decide


async def drain(request: web.Request) -> web.Response:
    name = acting(request)
    body = await read_body(request)
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise RequestInvalid('the body is JSON: {"on": true, "note": "why"}') from None
    on = data.get("on") if isinstance(data, dict) else None
    note = data.get("note") if isinstance(data, dict) else None
    if not isinstance(on, bool) or (note is not None and not isinstance(note, str)):
        raise RequestInvalid('the body is {"on": true|false, "note": "why"}')
    node = request.app[OPS].node
    if on:
        await node.start_drain(by=name, note=note)
    else:
        await node.stop_drain(by=name, note=note)
    forget_status(request)
    return web.json_response(
        {
            "draining": node.drain is not None,
            "since": node.drain.since.isoformat() if node.drain else None,
        }
    )


ROUTES: Mapping[tuple[str, str], Callable[[web.Request], Awaitable[web.Response]]] = {
    ("GET", "/healthz"): healthz,
    ("GET", "/readyz"): readyz,
    ("GET", "/status"): status,
    ("GET", "/metrics"): metrics,
    ("GET", "/v1/ops/whoami"): whoami,
    ("GET", "/v1/ops/dead-letters"): dead_letters,
    ("POST", "/v1/ops/dead-letters/{id}/replay"): replay,
    ("POST", "/v1/ops/dead-letters/{id}/purge"): purge,
    ("GET", "/v1/ops/quarantine"): quarantine,
    ("POST", "/v1/ops/quarantine/{id}/release"): _decide("released"),
    ("POST", "/v1/ops/quarantine/{id}/refuse"): _decide("rejected"),
    ("GET", "/v1/ops/failed"): failed,
    ("GET", "/v1/ops/overdue"): overdue,
    ("GET", "/v1/ops/search"): search,
    ("GET", "/v1/ops/packages/{id}"): package,
    ("POST", "/v1/ops/drain"): drain,
}


def add_ops_routes(app: web.Application, ops: OpsView) -> None:
    app[OPS], app[CACHE] = ops, {}
    for (method, path), handler in ROUTES.items():
        app.router.add_route(method, path, handler)
