"""``GET /status``: what an operator sees of one node at a glance (docs/operations.md).

One ``OpsView`` per node. Its ``watch`` task looks at the broker every few seconds (is
each child's consumer on its lane? how deep is each queue?) and keeps a point a minute
of the backlog for the charts; ``status()`` adds what the store knows (backlog per link,
pending mail, dead letters, quarantine, the last hour's receipts, overdue answers) and
what the files say (certificates, the directory), and reads each part on its own, so a
store that is down still leaves the broker's half of the answer, and says so.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import structlog

from adapters import ops_checks
from adapters.bridge import Bridge
from adapters.ops_checks import Certificates
from adapters.transport_amqp import AmqpTransport
from exchange.alerting import AlertMemory, Thresholds, evaluate
from exchange.config import TrustSettings
from exchange.errors import LienthongError, StoreFull
from exchange.evidence import EventKind
from exchange.linkboard import CHILD, DOWN, PARENT, UP, LinkState
from exchange.links import LANES, down_queue, split_target, up_queue
from exchange.node import Node, dead_letter_about
from exchange.store import Operations

log = structlog.get_logger("lienthong.ops")

WATCH_EVERY_S = 5.0
CLOCK_SKEW_S = 60.0
LEVELS = ("central", "province", "district", "commune")
MAX_ITEMS = 50  # rows of each list in one answer


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _version() -> str:
    try:
        return metadata.version("lienthong")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Probe:
    ok: bool
    ms: float
    error: str | None

    def json(self) -> dict[str, Any]:
        return {"ok": self.ok, "ms": round(self.ms, 1), "error": self.error}


class OpsView:
    def __init__(
        self,
        node: Node,
        *,
        trust: TrustSettings | None = None,
        thresholds: Thresholds | None = None,
        bridges: Sequence[Bridge] = (),
        started_at: datetime | None = None,
    ) -> None:
        self.node = node
        self.trust = trust
        self.thresholds = thresholds or Thresholds()
        self._alerts = AlertMemory()
        self.bridges = list(bridges)
        self.started_at = started_at or datetime.now(UTC)
        self._started = time.monotonic()
        self.queues: dict[str, tuple[int, int]] = {}  # name -> (messages, consumers)
        self.backlog_points: deque[tuple[datetime, int]] = deque(maxlen=60)
        self._certificates = Certificates(node, trust)
        self._about: dict[int, dict[str, Any]] = {}  # dead letter id -> what it says

    def now(self) -> datetime:
        return datetime.now(UTC)

    # --- the broker, every few seconds ------------------------------------------------

    async def watch(self, every_s: float = WATCH_EVERY_S) -> None:
        """Look every few seconds; what goes wrong in a look is logged, and never stops
        the node it watches (the node migrates its store as it starts: look after it)."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.look()
            except LienthongError as exc:
                log.info("ops.look_failed", node=self.node.settings.node_id, error=exc.message)
            except Exception:  # a bug in a look: seen in the log, the node goes on
                log.exception("ops.look_crashed", node=self.node.settings.node_id)

    async def look(self) -> None:
        """Queue depths, and each link as the broker sees it."""
        node, me = self.node, self.node.settings.node_id
        for name in self._own_queues():
            info = await node.transport.inspect(name)
            if info is not None:
                self.queues[name] = (info.messages, info.consumers)
        for child in node.settings.children:
            info = await node.transport.inspect(down_queue(me, child, "normal"))
            if info is not None and info.consumers > 0:
                node.links.up(child, CHILD)
            else:
                node.links.down(
                    child, CHILD, "no consumer on its lanes: the child is not connected"
                )
        parent = node.settings.parent
        if parent is not None and isinstance(node.parent_transport, AmqpTransport):
            lost = node.parent_transport.lost
            if lost is not None:
                node.links.down(parent, PARENT, lost)
            elif node.parent_transport.connected:
                try:
                    for lane in LANES:
                        info = await node.parent_transport.inspect(down_queue(parent, me, lane))
                        if info is not None:
                            self.queues[f"{parent}:{info.name}"] = (info.messages, info.consumers)
                    node.links.up(parent, PARENT)
                except LienthongError as exc:
                    node.links.down(parent, PARENT, exc.message)
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        if not self.backlog_points or self.backlog_points[-1][0] != minute:  # a point a minute
            _, ops = await self.probe_store()
            if ops is not None:
                self._sample(self._links_and_upstreams(ops)[2])

    def _own_queues(self) -> list[str]:
        node, me = self.node, self.node.settings.node_id
        names = [node.queues.inbound, node.queues.requests, node.queues.dead]
        names += [
            node.queues.login_inbound(login) for login in sorted(node.settings.credentials or {})
        ]
        if node.settings.topology is not None:
            names += [up_queue(me, lane) for lane in LANES]
            names += [down_queue(me, c, lane) for c in node.settings.children for lane in LANES]
        return names

    def _sample(self, backlog: int) -> None:
        """The backlog of this minute: the last one seen in it."""
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        if self.backlog_points and self.backlog_points[-1][0] == minute:
            self.backlog_points[-1] = (minute, backlog)
        else:
            self.backlog_points.append((minute, backlog))

    # --- readiness ---------------------------------------------------------------------

    async def probe_store(self) -> tuple[Probe, Operations | None]:
        began = time.monotonic()
        try:
            ops = await self.node.store.operations(datetime.now(UTC) - timedelta(hours=1))
            full = await self.node.store.disk_full()  # it reads, but it cannot write
        except Exception as exc:  # noqa: BLE001 - whatever the store raised: not ready
            return Probe(False, (time.monotonic() - began) * 1000, str(exc)), None
        took = (time.monotonic() - began) * 1000
        if full is not None:
            return Probe(False, took, f"{StoreFull.code}: {full}"), ops
        return Probe(True, took, None), ops

    async def probe_broker(self) -> Probe:
        began = time.monotonic()
        try:
            found = await self.node.transport.inspect(self.node.queues.inbound)
        except Exception as exc:  # noqa: BLE001 - whatever the broker raised: not ready
            return Probe(False, (time.monotonic() - began) * 1000, str(exc))
        error = None if found is not None else f"queue {self.node.queues.inbound} is missing"
        return Probe(found is not None, (time.monotonic() - began) * 1000, error)

    # --- the whole view ------------------------------------------------------------------

    async def status(self) -> dict[str, Any]:
        now = datetime.now(UTC)
        store, ops = await self.probe_store()
        broker = await self.probe_broker()
        node = self.node
        links, upstreams, total = self._links_and_upstreams(ops)
        if ops is not None:
            self._sample(total)
        view: dict[str, Any] = {
            "node": self._node_json(now),
            "drain": await self._drain_json(ops),
            "health": {"store": store.json(), "broker": broker.json()},
            "links": links,
            "upstreams": upstreams,
            "queues": [
                {"name": name, "messages": depth, "consumers": consumers}
                for name, (depth, consumers) in sorted(self.queues.items())
            ],
            "mailboxes": _mail_json(ops),
            "dead_letters": {"count": ops.dead_letters if ops else None, "items": []},
            "quarantine": {"count": ops.quarantined if ops else None, "items": []},
            "failed": {"count": None, "items": []},
            "receipts_last_hour": dict(ops.events) if ops else {},
            "overdue": {"count": None, "items": []},
            "certificates": await self._certificates.rows(now),
            "directory": self._directory_json(now),
            "clock": _clock_json(node.links.states(), now),
            "series": self._series_json(ops),
            "alerts": [],
        }
        if ops is not None:  # the store answered once: the lists from it too
            try:
                view["dead_letters"]["items"] = await self.dead_letters()
                view["quarantine"]["items"] = await self.quarantined()
                failed = await self.failed()
                view["failed"] = {"count": len(failed), "items": failed}
                overdue = await self.overdue(now)
                view["overdue"] = {"count": len(overdue), "items": overdue[:MAX_ITEMS]}
            except LienthongError as exc:
                view["health"]["store"] = Probe(False, 0.0, exc.message).json()
        alerts = evaluate(view, now=now, memory=self._alerts, thresholds=self.thresholds)
        view["alerts"] = [alert.as_status() for alert in alerts]
        return view

    def _links_and_upstreams(
        self, ops: Operations | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
        backlog = _backlog_by_neighbour(ops)
        links = [self._link_json(state, backlog) for state in self.node.links.states()]
        upstreams = [self._upstream_json(bridge, backlog) for bridge in self.bridges]
        total = sum(x["backlog_total"] for x in [*links, *upstreams])
        return links, upstreams, total

    def _node_json(self, now: datetime) -> dict[str, Any]:
        settings = self.node.settings
        depth = len(settings.topology.ancestry(settings.node_id)) - 1 if settings.topology else 0
        return {
            "id": settings.node_id,
            "level": LEVELS[min(depth, len(LEVELS) - 1)] if settings.topology else "standalone",
            "parent": settings.parent,
            "children": list(settings.children),
            "hosted": sorted(settings.hosted),
            "version": _version(),
            "started_at": self.started_at.isoformat(),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "now": now.isoformat(),
        }

    async def _drain_json(self, ops: Operations | None) -> dict[str, Any] | None:
        drain = self.node.drain
        if drain is None:
            return None
        waiting = sum(b.count for b in ops.backlog) if ops else None
        in_flight = self.node.in_flight
        return {
            "since": drain.since.isoformat(),
            "by": drain.by,
            "note": drain.note,
            "in_flight": in_flight,
            "waiting_to_send": waiting,
            "done": in_flight == 0 and waiting == 0,
        }

    def _link_json(self, state: LinkState, backlog: Mapping[str, dict[str, int]]) -> dict[str, Any]:
        me, them = self.node.settings.node_id, state.neighbour
        out = {lane: backlog.get(them, {}).get(lane, 0) for lane in LANES}
        inbound = dict.fromkeys(LANES, 0)
        if state.role == CHILD:  # sent on its lanes here, not yet taken by the child
            for lane in LANES:
                out[lane] += self.queues.get(down_queue(me, them, lane), (0, 0))[0]
        else:  # waiting for us on the parent's broker
            for lane in LANES:
                inbound[lane] = self.queues.get(f"{them}:{down_queue(them, me, lane)}", (0, 0))[0]
        return {
            "neighbour": them,
            "role": state.role,
            "state": state.state,
            "since": _iso(state.since),
            "last_error": state.last_error if state.state == DOWN else None,
            "backlog": {"out": out, "in": inbound},
            "backlog_total": sum(out.values()) + sum(inbound.values()),
            "clock_offset_s": None if state.offset_s is None else round(state.offset_s, 3),
        }

    def _upstream_json(
        self, bridge: Bridge, backlog: Mapping[str, dict[str, int]]
    ) -> dict[str, Any]:
        state = bridge.state
        polls = list(state.credentials.values())
        last_ok = max((c.last_ok for c in polls if c.last_ok), default=None)
        last_poll = max((c.last_poll for c in polls if c.last_poll), default=None)
        errors = [c.last_error for c in polls if c.last_error]
        if state.send_error:
            errors.append(state.send_error)
        quiet = last_poll is None and not state.sent
        health = "unknown" if quiet else DOWN if errors else UP
        waiting = sum(backlog.get(bridge.settings.node, {}).values())
        return {
            "name": bridge.settings.name,
            "protocol": bridge.settings.protocol,
            "state": health,
            "since": _iso(last_ok if health == UP else last_poll),
            "last_error": "; ".join(errors) or None,
            "backlog_total": waiting,
            "last_poll": _iso(last_poll),
            "last_ok": _iso(last_ok),
            "taken": sum(c.taken for c in polls),
            "refused": sum(c.refused for c in polls),
            "sent": state.sent,
            "agencies": state.agencies,
        }

    def _directory_json(self, now: datetime) -> dict[str, Any]:
        sync = self.node.directory_sync
        if sync is None:
            return {"version": None, "issued_at": None, "age_s": None, "signed": False}
        issued = _parsed(sync.kept.issued_at)
        return {
            "version": sync.version,
            "issued_at": _iso(issued),
            "age_s": round((now - issued).total_seconds(), 1) if issued else None,
            "signed": True,
        }

    def _series_json(self, ops: Operations | None) -> dict[str, Any]:
        counts: dict[datetime, dict[str, int]] = {}
        for minute, kind, count in ops.per_minute if ops else ():
            key = "delivered" if kind == EventKind.DELIVERED.value else "admitted"
            slot = counts.setdefault(minute, {"admitted": 0, "delivered": 0})
            slot[key] += count
        backlog = dict(self.backlog_points)
        minutes = sorted(set(counts) | set(backlog))[-60:]
        return {
            "step_s": 60,
            "points": [
                {
                    "at": m.isoformat(),
                    "backlog": backlog.get(m),
                    "admitted": counts.get(m, {}).get("admitted", 0),
                    "delivered": counts.get(m, {}).get("delivered", 0),
                }
                for m in minutes
            ],
        }

    # --- lists -----------------------------------------------------------------------------

    async def dead_letters(self) -> list[dict[str, Any]]:
        rows = []
        for letter in list(await self.node.store.dead_letters())[-MAX_ITEMS:]:
            about = self._about.get(letter.id)
            if about is None:
                try:
                    data = await self.node.store.dead_letter_bytes(letter.id)
                    found = dead_letter_about(data, letter.source, self.node.settings.node_id)
                except (KeyError, OSError):
                    found = None
                about = {
                    "message_id": found.message_id if found else None,
                    "document_id": found.document_id if found else None,
                    "sender": found.sender if found else None,
                    "recipients": list(found.recipients) if found else [],
                }
                self._about[letter.id] = about
            rows.append(
                {
                    "id": letter.id,
                    "source": letter.source,
                    "reason": letter.reason,
                    "attempts": letter.attempts,
                    "dead_at": letter.dead_at.isoformat(),
                    **about,
                }
            )
        return rows

    async def quarantined(self) -> list[dict[str, Any]]:
        return [
            {
                "message_id": held.message_id,
                "document_id": held.document_id,
                "sender": held.sender,
                "source": held.source,
                "reason": held.reason,
                "held_at": held.held_at.isoformat(),
            }
            for held in list(await self.node.store.quarantined())[:MAX_ITEMS]
        ]

    async def failed(self) -> list[dict[str, Any]]:
        return [
            {
                "id": row.id,
                "message_id": row.message_id,
                "target": row.target,
                "reason": row.failure,
                "failed_at": row.failed_at.isoformat(),
            }
            for row in await self.node.store.failed_outbox(limit=MAX_ITEMS)
        ]

    async def overdue(self, now: datetime) -> list[dict[str, Any]]:
        return await ops_checks.overdue(self.node, now)


def _backlog_by_neighbour(ops: Operations | None) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for row in ops.backlog if ops else ():
        node, lane = split_target(row.target)
        found.setdefault(node, {})
        found[node][lane] = found[node].get(lane, 0) + row.count
    return found


def _mail_json(ops: Operations | None) -> dict[str, Any]:
    if ops is None:
        return {"pending_total": None, "top": []}
    return {
        "pending_total": sum(m.count for m in ops.mail),
        "top": [{"organ": m.organ, "pending": m.count, "oldest": _iso(m.oldest)} for m in ops.mail],
    }


def _clock_json(states: Sequence[LinkState], now: datetime) -> dict[str, Any]:
    recent = [
        s
        for s in states
        if s.offset_s is not None
        and s.heard_at is not None
        and now - s.heard_at < timedelta(hours=1)
    ]
    if not recent:
        return {
            "offset_s": None,
            "ok": True,
            "basis": "no hop record from a neighbour in the last hour",
        }
    worst = max(recent, key=lambda s: abs(s.offset_s or 0.0))
    offset = worst.offset_s or 0.0
    return {
        "offset_s": round(offset, 3),
        "ok": abs(offset) <= CLOCK_SKEW_S,
        "basis": f"hop record of {worst.neighbour} at {_iso(worst.heard_at)} "
        "(their clock minus ours, transit included)",
    }


def _parsed(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
