"""Carrying reports back towards the node that must learn of them, batched per link.

A report is an evidence event with ``report_to`` (exchange/reporting.py): a delivery,
a fetch, a failure judged downstream, a chain checkpoint for the parent. Each round
takes the oldest pending ones, groups them by the neighbour on the way to their node,
and sends one signed batch per neighbour; only a batch the neighbour's broker
confirmed is marked reported. A neighbour whose link is down keeps its reports pending.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import structlog

from exchange import reporting
from exchange.checkpoint import open_checkpoint
from exchange.envelope import NodeKey, NodePublicKey
from exchange.errors import CheckpointInvalid, TransientFault
from exchange.evidence import Event, EventKind
from exchange.store import Store
from exchange.topology import Topology

log = structlog.get_logger("lienthong.reports")

SendFn = Callable[[str, bytes], Awaitable[None]]  # (neighbour, body): publish with a confirm


class ReportRelay:
    def __init__(
        self,
        node_id: str,
        *,
        store: Store,
        key: NodeKey,
        send: SendFn,
        topology: Callable[[], Topology | None],
        peer_keys: Callable[[], dict[str, NodePublicKey]],
        batch: int = reporting.REPORT_BATCH,
    ) -> None:
        self.node_id = node_id
        self.store = store
        self._key = key
        self._send = send
        self._topology = topology
        self._peer_keys = peer_keys
        self._batch = batch
        self._due = True  # whether the store may hold reports to send (at start: look)

    def note(self, events: Sequence[Event]) -> None:
        """Events were recorded: when one is bound for another node, look next round."""
        if any(e.report_to and e.report_to != self.node_id for e in events):
            self._due = True

    async def relay_once(self) -> int:
        """One round: returns how many reports went. The store is asked only when
        something was recorded for another node since the last round found none."""
        if not self._due:
            return 0
        self._due = False  # set again by note() meanwhile, or below when some must wait
        pending = await self.store.pending_reports(self._batch * 4)
        if not pending:
            return 0
        if len(pending) == self._batch * 4:
            self._due = True  # more behind these
        topology = self._topology()
        by_neighbour: dict[str, list[tuple[int, Event]]] = {}
        settled: list[int] = []
        for row_id, event in pending:
            target = event.report_to
            if target == self.node_id or target is None:
                settled.append(row_id)  # it has arrived: nothing to carry
                continue
            hop = topology.toward(self.node_id, target) if topology else None
            if hop is None:
                log.warning("reports.no_route", to=target, key=event.key)
                settled.append(row_id)  # a node not in the tree: keep the fact, stop
                continue
            by_neighbour.setdefault(hop, []).append((row_id, event))
        await self.store.mark_reported(settled)
        sent = 0
        for neighbour, rows in by_neighbour.items():
            for start in range(0, len(rows), self._batch):
                chunk = rows[start : start + self._batch]
                body = reporting.seal_reports(self._key, [e for _, e in chunk])
                try:
                    await self._send(neighbour, body)
                except TransientFault as exc:
                    log.info("reports.waiting", neighbour=neighbour, error=exc.message)
                    self._due = True  # try again next round
                    break  # this link is away: the rest for it waits too
                await self.store.mark_reported([i for i, _ in chunk])
                sent += len(chunk)
        return sent

    def neighbours(self) -> list[str]:
        topology = self._topology()
        if topology is None:
            return []
        parent = topology.parents.get(self.node_id)
        children = [n for n, p in topology.parents.items() if p == self.node_id]
        return [*([parent] if parent else []), *children]

    def _checkpoint_holds(self, event: Event) -> bool:
        """A child's checkpoint is kept only when its own node signed it."""
        if event.kind is not EventKind.CHECKPOINT:
            return True
        try:
            checkpoint = open_checkpoint(event.detail.get("checkpoint") or {}, self._peer_keys())
        except CheckpointInvalid as fault:
            log.warning("reports.checkpoint_refused", key=event.key, error=fault.message)
            return False
        return checkpoint.node == event.node

    async def take(self, body: bytes) -> tuple[str, int]:
        """A batch from a neighbour: record each event, still bound onwards unless it is
        for this node. Returns (sender, how many were new here)."""
        sender, events = reporting.open_reports(body, self._peer_keys(), self.neighbours())
        kept: Sequence[Event] = [
            dataclasses.replace(e, report_to=None) if e.report_to == self.node_id else e
            for e in events
            if self._checkpoint_holds(e)
        ]
        added = await self.store.record_events(kept)
        self.note(kept)
        return sender, added
