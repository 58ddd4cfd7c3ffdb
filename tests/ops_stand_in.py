"""A stand-in for a node's operator endpoints (ops-spec), for the console's render tests.

``FakeOps`` answers ``GET /status`` and the ``/v1/ops/...`` endpoints from one fixed,
realistic status of province-h53 (``realistic_status``: a cut link to a district, its
backlog climbing since the cut, a dead letter, a quarantined package, an overdue
acknowledgement), serves the real console files beside them, and records every action
posted to it. It knows two tokens: ``OPERATOR`` and ``VIEWER``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from adapters.console import add_console_routes

OPERATOR, VIEWER = "tok-ops-tayninh-0001", "tok-audit-tayninh-0002"
WHO = {OPERATOR: ("ops-tayninh", "operator"), VIEWER: ("audit-tayninh", "viewer")}
CUT = "district-31-h53"  # the child whose link is down
DEAD_ID = 17
HELD = "7d0f3c1e-2b4a-4c55-9e61-0a8d2f4b6c13"
MESSAGE = "a3c9e2f0-5d1b-4e7a-8f60-2b9d4c1e7a55"


def iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def series(now: datetime) -> list[dict[str, Any]]:
    """An hour, a minute a point: quiet traffic, then the link cut 14 minutes ago and the
    backlog for it climbing while admissions go on and deliveries behind it stop."""
    points = []
    for minute in range(60):
        at = now - timedelta(minutes=59 - minute)
        since_cut = minute - 45
        admitted = round(5 + 2 * math.sin(minute / 5) + (minute % 3) / 2)
        if since_cut < 0:
            backlog, delivered = minute % 3 // 2, admitted - minute % 2
        else:
            backlog, delivered = 2 + since_cut * 3 - since_cut % 2, max(0, admitted - 3)
        points.append(
            {"at": iso(at), "backlog": backlog, "admitted": admitted, "delivered": delivered}
        )
    return points


def lanes(urgent: int = 0, normal: int = 0, bulk: int = 0) -> dict[str, int]:
    return {"urgent": urgent, "normal": normal, "bulk": bulk}


def realistic_status(now: datetime) -> dict[str, Any]:
    """A /status of province-h53 (ops-spec shape) as an operator would meet it."""
    cut_at = now - timedelta(minutes=14, seconds=20)
    dead = {
        "id": DEAD_ID,
        "source": f"link:{CUT}",
        "reason": "signature.invalid: the hop record of district-31-h53 does not verify "
        "against its node certificate",
        "attempts": 5,
        "dead_at": iso(now - timedelta(minutes=9)),
        "message_id": MESSAGE,
        "document_id": "1234/UBND-VP",
        "sender": "000.00.31.H53",
    }
    held = {
        "message_id": HELD,
        "document_id": "88/STC-KHNS",
        "sender": "000.00.11.H53",
        "source": "http:qlvb-tayninh",
        "reason": "pades.untrusted: the PDF's signing certificate is not in the trust list",
        "held_at": iso(now - timedelta(minutes=31)),
    }
    overdue = {
        "message_id": "c1d2e3f4-0000-4a4a-9b9b-111122223333",
        "document_id": "56/UBND-KT",
        "sender": "000.00.00.H53",
        "recipient": "000.21.31.H53",
        "delivered_at": iso(now - timedelta(days=1, hours=3)),
        "due": iso(now - timedelta(hours=20)),
    }
    failed = {
        "id": 4,
        "message_id": "e5f6a7b8-1111-4c4c-8d8d-444455556666",
        "target": "000.99.99.H53",
        "reason": "recipient.unknown: no node hosts 000.99.99.H53",
        "failed_at": iso(now - timedelta(minutes=48)),
    }
    return {
        "node": {
            "id": "province-h53",
            "level": "province",
            "version": "0.1.0",
            "started_at": iso(now - timedelta(hours=3, minutes=12)),
            "uptime_s": 11520.0,
        },
        "drain": None,
        "health": {
            "store": {"ok": True, "ms": 1.4, "error": None},
            "broker": {"ok": True, "ms": 2.1, "error": None},
        },
        "links": [
            {
                "neighbour": "central",
                "role": "parent",
                "state": "up",
                "since": iso(now - timedelta(hours=3, minutes=11)),
                "last_error": None,
                "backlog": {"out": lanes(normal=1), "in": lanes()},
                "backlog_total": 1,
            },
            {
                "neighbour": CUT,
                "role": "child",
                "state": "down",
                "since": iso(cut_at),
                "last_error": "AMQPConnectionError: [Errno 111] Connection refused "
                "(district-31-h53.tayninh.gov.vn:5671)",
                "backlog": {"out": lanes(urgent=2, normal=37, bulk=2), "in": lanes()},
                "backlog_total": 41,
            },
            {
                "neighbour": "district-02-h53",
                "role": "child",
                "state": "up",
                "since": iso(now - timedelta(hours=3, minutes=10)),
                "last_error": None,
                "backlog": {"out": lanes(), "in": lanes()},
                "backlog_total": 0,
            },
            {
                "neighbour": "district-45-h53",
                "role": "child",
                "state": "unknown",
                "since": None,
                "last_error": None,
                "backlog": {"out": lanes(), "in": lanes()},
                "backlog_total": 0,
            },
        ],
        "upstreams": [
            {
                "name": "vdxp",
                "protocol": "vdxp",
                "state": "up",
                "since": iso(now - timedelta(hours=3)),
                "last_error": None,
                "backlog_total": 0,
                "last_poll": iso(now - timedelta(seconds=20)),
                "last_ok": iso(now - timedelta(seconds=20)),
                "taken": 12,
                "refused": 1,
                "sent": 9,
            }
        ],
        "queues": [
            {"name": "lienthong.node.province-h53.inbound", "messages": 0, "consumers": 1},
            {"name": f"lienthong.link.province-h53.{CUT}.normal", "messages": 37, "consumers": 0},
            {"name": "lienthong.node.province-h53.dead", "messages": 1, "consumers": 0},
        ],
        "mailboxes": {
            "pending_total": 5,
            "top": [
                {"organ": "000.00.00.H53", "pending": 3, "oldest": iso(now - timedelta(hours=2))},
                {"organ": "000.00.11.H53", "pending": 2, "oldest": iso(now - timedelta(minutes=7))},
            ],
        },
        "dead_letters": {"count": 1, "items": [dead]},
        "quarantine": {"count": 1, "items": [held]},
        "failed": {"count": 1, "items": [failed]},
        "receipts_last_hour": {
            "accepted": 214,
            "received": 96,
            "delivered": 187,
            "fetched": 140,
            "failed": 1,
            "status": 33,
            "bridged": 9,
        },
        "overdue": {"count": 1, "items": [overdue]},
        "certificates": [
            {
                "subject": "node province-h53",
                "kind": "node",
                "not_after": iso(now + timedelta(days=301)),
                "days_left": 301,
                "warn": False,
            },
            {
                "subject": "000.00.11.H53",
                "kind": "agency",
                "not_after": iso(now + timedelta(days=24)),
                "days_left": 24,
                "warn": True,
            },
        ],
        "directory": {"version": 12, "issued_at": iso(now - timedelta(hours=6)), "age_s": 21600.0},
        "clock": {"offset_s": 0.4, "ok": True, "basis": "broker"},
        "series": {"step_s": 60, "points": series(now)},
        "alerts": [
            {
                "name": "LienthongLinkDown",
                "severity": "critical",
                "summary": f"link to {CUT} down since {iso(cut_at)}",
            },
            {
                "name": "LienthongDeadLetters",
                "severity": "warning",
                "summary": "1 dead letter held on province-h53",
            },
        ],
    }


def package_view(now: datetime) -> dict[str, Any]:
    """GET /v1/ops/packages/{id}: the document status view of tracking (docs/tracking.md)."""
    return {
        "message_id": MESSAGE,
        "document_id": "1234/UBND-VP",
        "sender": "000.00.31.H53",
        "kind": "edoc",
        "level": "strict",
        "received_at": iso(now - timedelta(minutes=40)),
        "here": "province-h53",
        "origin": False,
        "hops": [
            [CUT, iso(now - timedelta(minutes=41))],
            ["province-h53", iso(now - timedelta(minutes=40))],
        ],
        "recipients": [
            {
                "recipient": "000.00.00.H53",
                "transport": "fetched",
                "at": iso(now - timedelta(minutes=30)),
                "node": "province-h53",
                "reason": None,
                "receipt": True,
                "status": "03",
                "status_meaning": "đã tiếp nhận",
                "overdue": False,
            },
            {
                "recipient": "000.00.00.G22",
                "transport": "failed",
                "at": iso(now - timedelta(minutes=9)),
                "node": "province-h53",
                "reason": "dead-lettered: signature.invalid",
                "receipt": False,
                "status": None,
                "status_meaning": None,
                "overdue": False,
            },
        ],
        "receipts": [
            {
                "node": "province-h53",
                "recipients": ["000.00.00.H53"],
                "at": iso(now - timedelta(minutes=40)),
                "document": "PHJlY2VpcHQvPg==",
            }
        ],
        "statuses": [[iso(now - timedelta(minutes=30)), "000.00.00.H53", "03"]],
    }


@dataclass
class FakeOps:
    """Stand-in for the node's operator endpoints: a fixed status, the POSTs recorded."""

    now: datetime
    status: dict[str, Any] = field(init=False)
    posts: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    tokens: dict[str, tuple[str, str]] = field(default_factory=lambda: dict(WHO))

    def __post_init__(self) -> None:
        self.status = realistic_status(self.now)

    @staticmethod
    def problem(status: int, code: str, detail: str) -> web.Response:
        body = {"type": f"urn:lienthong:error:{code}", "title": code, "status": status}
        return web.json_response(
            {**body, "code": code, "detail": detail},
            status=status,
            content_type="application/problem+json",
        )

    def caller(self, request: web.Request) -> tuple[str, str] | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return self.tokens.get(token.strip()) if scheme.lower() == "bearer" else None

    def app(self) -> web.Application:
        app = web.Application()
        add_console_routes(app)
        for path, handler in {
            "/status": lambda _: self.status,
            "/v1/ops/whoami": None,
            "/v1/ops/dead-letters": lambda _: {"items": self.status["dead_letters"]["items"]},
            "/v1/ops/quarantine": lambda _: {"items": self.status["quarantine"]["items"]},
            "/v1/ops/failed": lambda _: {"items": self.status["failed"]["items"]},
            "/v1/ops/overdue": lambda _: {"items": self.status["overdue"]["items"]},
            "/v1/ops/search": self.search,
            "/v1/ops/packages/{id}": self.package,
        }.items():
            app.router.add_get(path, self.read(handler))
        app.router.add_post("/v1/ops/{what}/{id}/{verb}", self.act)
        app.router.add_post("/v1/ops/drain", self.act)
        return app

    def read(self, answer: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            who = self.caller(request)
            if who is None:
                return self.problem(401, "auth.unauthenticated", "send Authorization: Bearer")
            if answer is None:
                return web.json_response({"name": who[0], "role": who[1]})
            found = answer(request)
            if found is None:
                return self.problem(404, "tracking.not_tracked", "no such package here")
            return web.json_response(found)

        return handler

    def search(self, request: web.Request) -> dict[str, Any]:
        wanted = request.query.get("document_id", "")
        items = [
            {
                "message_id": MESSAGE,
                "document_id": "1234/UBND-VP",
                "sender": "000.00.31.H53",
                "kind": "edoc",
                "at": iso(self.now - timedelta(minutes=40)),
                "event": event,
            }
            for event in ("received", "delivered", "fetched")
        ]
        return {"items": [i for i in items if not wanted or i["document_id"] == wanted]}

    def package(self, request: web.Request) -> dict[str, Any] | None:
        ident = request.match_info["id"]
        return package_view(self.now) if ident in (MESSAGE, "1234/UBND-VP") else None

    async def act(self, request: web.Request) -> web.Response:
        who = self.caller(request)
        if who is None:
            return self.problem(401, "auth.unauthenticated", "send Authorization: Bearer")
        if who[1] != "operator":
            return self.problem(403, "ops.forbidden", "a viewer may look, not act")
        body = await request.json()
        self.posts.append((request.path, body, who[0]))
        verb, ident = request.match_info.get("verb"), request.match_info.get("id", "")
        if verb == "replay":  # replayed: gone from the dead letters at the next refresh
            self.status["dead_letters"] = {"count": 0, "items": []}
            return web.json_response({"id": int(ident), "replayed": True, "to": "inbound"})
        if verb == "purge":
            return self.problem(409, "ops.conflict", f"dead letter {ident} was replayed")
        if verb in ("release", "refuse"):
            decision = "released" if verb == "release" else "rejected"
            return web.json_response({"message_id": ident, "decision": decision})
        return web.json_response({"draining": body.get("on"), "since": iso(self.now)})
