"""Carrying reports back towards the node that must learn of them, batched per link.

A report is an evidence event with ``report_to`` (exchange/reporting.py): a delivery,
a fetch, a failure judged downstream, a chain checkpoint for the parent. Each round
takes the oldest pending ones, groups them by the neighbour on the way to their node,
and sends one signed batch per neighbour; only a batch the neighbour's broker
confirmed is marked reported. A neighbour whose link is down keeps its reports pending,
and the round goes on with the reports bound elsewhere.

The relay asks the store when something was recorded for another node, and, in any case,
every ``recheck_s``: a store shared by several service instances may hold reports that
another instance recorded, or left when it went away (their leases ran out).

A batch is taken only from a neighbour, and from it only what that neighbour's side of
the tree can know: events of the kinds that are reported, by nodes on its side, bound
for this node or onwards away from it (docs/tracking.md, "How receipts travel back").
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from exchange import reporting
from exchange.checkpoint import open_checkpoint
from exchange.envelope import NodeKey, PeerKey
from exchange.errors import CheckpointInvalid, TransientFault
from exchange.evidence import Event, EventKind
from exchange.store import Store
from exchange.topology import Topology
from exchange.upstream import is_upstream

log = structlog.get_logger("lienthong.reports")

SendFn = Callable[[str, bytes], Awaitable[None]]  # (neighbour, body): publish with a confirm
REPORTED = frozenset(
    {
        EventKind.DELIVERED,
        EventKind.FETCHED,
        EventKind.FAILED,
        EventKind.REVOKED,
        EventKind.CHECKPOINT,
        EventKind.BRIDGED,  # a copy handed to an upstream axis: as far as it can be followed
    }
)
ROUNDS = 4  # queries per relay round, each past the destinations whose link refused
RECHECK_S = 30.0  # the store is asked at least this often, whatever this process noted


class ReportRelay:
    def __init__(
        self,
        node_id: str,
        *,
        store: Store,
        key: NodeKey,
        send: SendFn,
        topology: Callable[[], Topology | None],
        peer_keys: Callable[[], dict[str, PeerKey]],
        batch: int = reporting.REPORT_BATCH,
        recheck_s: float = RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self._key = key
        self._send = send
        self._topology = topology
        self._peer_keys = peer_keys
        self._batch = batch
        self._due = True  # whether the store may hold reports to send (at start: look)
        self._recheck_s = recheck_s
        self._clock = clock
        self._looked = clock()  # when the store was last asked

    def use_key(self, key: NodeKey) -> None:
        """Seal batches with this key from now on (the node rotated its key)."""
        self._key = key

    def note(self, events: Sequence[Event]) -> None:
        """Events were recorded: when one is bound for another node, look next round."""
        if any(e.report_to and e.report_to != self.node_id for e in events):
            self._due = True

    async def relay_once(self) -> int:
        """One round: returns how many reports went. The store is asked only when
        something was recorded for another node since the last round found none, or
        when ``recheck_s`` has passed since it was last asked."""
        now = self._clock()
        if not self._due and now - self._looked < self._recheck_s:
            return 0
        self._due = False  # set again by note() meanwhile, or below when some must wait
        self._looked = now
        try:
            return await self._round()
        except BaseException:
            self._due = True  # nothing was lost: look again next round
            raise

    async def _round(self) -> int:
        topology = self._topology()
        blocked: set[str] = set()  # neighbours that refused this round
        skipped: set[str] = set()  # destinations behind them
        sent = 0
        for _ in range(ROUNDS):
            pending = await self.store.pending_reports(self._batch * 4, skip_to=skipped)
            if not pending:
                return sent
            by_neighbour: dict[str, list[tuple[int, Event]]] = {}
            settled: list[int] = []
            for row_id, event in pending:
                target = event.report_to
                hop = topology.toward(self.node_id, target) if topology and target else None
                if target is None or target == self.node_id:
                    settled.append(row_id)  # it has arrived: nothing to carry
                elif hop is None:
                    log.warning("reports.no_route", to=target, evidence=event.key)
                    self._due = True  # kept: the directory may bring its node back
                    skipped.add(target)
                elif hop in blocked:
                    skipped.add(target)
                else:
                    by_neighbour.setdefault(hop, []).append((row_id, event))
            await self.store.mark_reported(settled)
            for neighbour, rows in by_neighbour.items():
                for start in range(0, len(rows), self._batch):
                    chunk = rows[start : start + self._batch]
                    body = reporting.seal_reports(self._key, [e for _, e in chunk])
                    try:
                        await self._send(neighbour, body)
                    except TransientFault as exc:
                        log.info("reports.waiting", neighbour=neighbour, error=exc.message)
                        self._due = True  # try again next round
                        blocked.add(neighbour)
                        skipped.update(e.report_to for _, e in rows if e.report_to)
                        break  # this link is away: the rest for it waits too
                    await self.store.mark_reported([i for i, _ in chunk])
                    sent += len(chunk)
            if len(pending) < self._batch * 4 and not blocked:
                return sent
        self._due = True  # more than a round's worth: go on next round
        return sent

    def neighbours(self) -> list[str]:
        topology = self._topology()
        if topology is None:
            return []
        parent = topology.parents.get(self.node_id)
        children = [
            n for n, p in topology.parents.items() if p == self.node_id and not is_upstream(n)
        ]
        return [*([parent] if parent else []), *children]

    def _refusal(self, sender: str, event: Event) -> str | None:
        """Why a neighbour may not report this event; None when it may."""
        topology, me = self._topology(), self.node_id
        if event.kind not in REPORTED:
            return f"a {event.kind.value} event is not something a node reports"
        if topology is None or event.node not in topology.parents:
            return f"node {event.node} is not in the node tree"
        from_child = topology.parents.get(sender) == me
        if from_child and not topology.in_subtree(event.node, sender):
            return f"node {event.node} is not below {sender}, which reported it"
        if not from_child and topology.in_subtree(event.node, me):
            return f"node {event.node} is below this node, but came from the parent"
        target = event.report_to
        if target not in (None, me) and topology.toward(me, target) == sender:
            return f"it is bound for {target}, back the way it came"
        if event.kind is EventKind.CHECKPOINT:
            if event.node != sender or target != me:
                return "a checkpoint goes from a child to its parent only"
            try:
                checkpoint = open_checkpoint(
                    event.detail.get("checkpoint") or {}, self._peer_keys()
                )
            except CheckpointInvalid as fault:
                return fault.message
            if checkpoint.node != event.node:
                return f"the checkpoint is node {checkpoint.node}'s, not {event.node}'s"
        return None

    async def take(self, body: bytes) -> tuple[str, int]:
        """A batch from a neighbour: record each event it may report, still bound onwards
        unless it is for this node. Returns (sender, how many were new here)."""
        sender, events = reporting.open_reports(body, self._peer_keys(), self.neighbours())
        kept: list[Event] = []
        for event in events:
            refused = self._refusal(sender, event)
            if refused is not None:
                log.warning("reports.refused", came_from=sender, evidence=event.key, error=refused)
                continue
            kept.append(
                dataclasses.replace(event, report_to=None)
                if event.report_to == self.node_id
                else event
            )
        added = await self.store.record_events(kept)
        self.note(kept)
        return sender, added
