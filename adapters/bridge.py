"""The bridge to one upstream axis (docs/bridge.md): the national axis (VDXP) or a
provincial one, reached as a client through its protocol (adapters/upstream_*.py).

Three loops per upstream:

- **pull**, one per credential: list what waits (documents, then statuses), fetch each,
  hand it to the node's intake under the upstream's policy, and only once the node has
  committed it tell the upstream ``done`` (``fail``, with the reason, when the node refuses
  it). An item whose ``docId`` was taken before is confirmed again without a fetch. Polls
  follow the credential's schedule: at once while there is work, ``poll_every_s`` when idle,
  doubling on failures up to ``backoff_ceiling_s``, each jittered.
- **push**: the outbox rows routed to the upstream (``upstream:<name>/<lane>``), sent with
  ``sendEdoc`` (or the variant's call) until the upstream takes them; a definite refusal
  fails the copy for its recipients, with the upstream's reason.
- **agencies**: the upstream's agency list, merged into routing (the node's own agencies
  stay its own), refreshed every ``agencies_every_s`` and kept on disk for a restart.

Every crossing is recorded with both ids (the upstream's ``docId`` and our message id) and
a ``bridged`` event in the evidence log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from adapters.agency_gate import LocalDelivery
from adapters.durable import write_atomically
from exchange import reporting
from exchange.config import Credential
from exchange.envelope import envelope_record
from exchange.errors import (
    LienthongError,
    SenderFault,
    TransientFault,
    UpstreamRefused,
    UpstreamUnauthorised,
)
from exchange.evidence import Event, EventKind
from exchange.links import split_target
from exchange.node import SOURCE_HEADER, Answer, Node
from exchange.policy import PRESETS
from exchange.reporting import VIETNAM
from exchange.store import OutboxRow
from exchange.trace import append_trace_header
from exchange.transport import Message
from exchange.upstream import (
    KINDS,
    PendingItem,
    PollSchedule,
    UpstreamAgency,
    UpstreamClient,
    UpstreamSettings,
)

log = structlog.get_logger("lienthong.bridge")

SEND_BATCH = 50  # outbox rows taken at a time
MAX_ITEMS_PER_POLL = 500  # pending items taken from one list; the rest come next poll
REFUSALS_KEPT = 10_000  # refused docIds remembered (in memory): answered again unfetched


@dataclass
class CredentialState:
    """What an operator sees of one credential's polling."""

    name: str
    last_poll: datetime | None = None
    last_ok: datetime | None = None
    last_error: str | None = None
    taken: int = 0
    refused: int = 0


@dataclass
class BridgeState:
    upstream: str
    credentials: dict[str, CredentialState] = field(default_factory=dict)
    sent: int = 0
    send_error: str | None = None
    agencies: int = 0
    agencies_at: datetime | None = None


@dataclass(frozen=True)
class Taken:
    """What became of one pending item."""

    doc_id: str
    outcome: str  # "taken" | "again" | "refused" | "refused-again" | "retry"
    message_id: str | None = None
    reason: str | None = None


class Bridge:
    def __init__(
        self,
        node: Node,
        settings: UpstreamSettings,
        clients: Mapping[str, UpstreamClient],
        *,
        cache: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.node = node
        self.settings = settings
        self.clients = dict(clients)  # credential name -> its client
        self._cache = cache
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 (poll jitter, not a secret)
        self.state = BridgeState(
            settings.name, {name: CredentialState(name) for name in self.clients}
        )
        self._push_ready = asyncio.Event()
        self._refused: dict[str, str] = {}  # docId -> our fail reason, oldest first
        self._attach()

    def _attach(self) -> None:
        """The node judges what the bridge brings by the upstream's policy, under the
        upstream's source name, from any agency the upstream hosts."""
        settings = self.node.settings
        self.node.settings = replace(
            settings,
            sources={
                **(settings.sources or {}),
                self.settings.source: PRESETS[self.settings.policy],
            },
            http_credentials={
                **(settings.http_credentials or {}),
                self.user_id: Credential(source=self.settings.source),
            },
        )

    @property
    def user_id(self) -> str:
        """The caller the node's intake knows the bridge by (``Node.credential_of``)."""
        return self.settings.source

    # --- running ------------------------------------------------------------------------

    async def run(self) -> None:
        self.load_agencies()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._agencies_forever(), name=f"bridge-{self.settings.name}-dir")
            group.create_task(self._push_forever(), name=f"bridge-{self.settings.name}-push")
            for name in self.clients:
                group.create_task(self._pull_forever(name), name=f"bridge-{name}-pull")

    async def close(self) -> None:
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()

    async def _pull_forever(self, credential: str) -> None:
        schedule = PollSchedule(
            self.settings.poll_every_s, self.settings.backoff_ceiling_s, rng=self._rng
        )
        while True:
            try:
                found = await self.pull_once(credential)
                wait = schedule.after_success(found)
            except LienthongError as exc:
                wait = schedule.after_failure()
                log.warning(
                    "bridge.pull_failed",
                    upstream=self.settings.name,
                    credential=credential,
                    code=exc.code,
                    error=exc.message,
                    retry_in_s=round(wait, 1),
                )
            await asyncio.sleep(wait)

    async def _push_forever(self) -> None:
        schedule = PollSchedule(1.0, self.settings.backoff_ceiling_s, rng=self._rng)
        while True:
            self._push_ready.clear()
            try:
                moved = await self.push_once()
                wait = schedule.after_success(0) if not moved else 0.0
            except LienthongError as exc:
                wait = schedule.after_failure()
                self.state.send_error = f"{exc.code}: {exc.message}"
                log.warning(
                    "bridge.push_failed",
                    upstream=self.settings.name,
                    code=exc.code,
                    error=exc.message,
                    retry_in_s=round(wait, 1),
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._push_ready.wait()

    async def _agencies_forever(self) -> None:
        schedule = PollSchedule(
            self.settings.agencies_every_s, self.settings.backoff_ceiling_s, rng=self._rng
        )
        while True:
            try:
                await self.sync_agencies()
                wait = schedule.after_success(0)
            except LienthongError as exc:
                wait = min(schedule.after_failure(), self.settings.agencies_every_s)
                log.warning(
                    "bridge.agencies_failed",
                    upstream=self.settings.name,
                    code=exc.code,
                    error=exc.message,
                )
            await asyncio.sleep(wait)

    # --- pull ---------------------------------------------------------------------------

    async def pull_once(self, credential: str) -> int:
        """One poll of one credential: every kind, every item listed. Returns how many
        items were settled now (0: nothing new, and the next poll waits its turn); an
        item listed again after we answered it (the upstream did not record our answer)
        is answered again but is not new work, so it cannot make the bridge poll in a
        tight loop. Raises when the upstream cannot be asked."""
        client = self.clients[credential]
        state = self.state.credentials[credential]
        if self.node.drain is not None:  # maintenance: nothing new is taken in
            return 0
        state.last_poll = self._clock()
        settled = 0
        try:
            for kind in KINDS:
                items = (await client.pending(kind))[:MAX_ITEMS_PER_POLL]
                for item in items:
                    taken = await self.take(client, item)
                    if taken.outcome == "taken":
                        state.taken += 1
                    elif taken.outcome == "refused":
                        state.refused += 1
                    settled += taken.outcome in ("taken", "refused")
        except LienthongError as exc:
            state.last_error = f"{exc.code}: {exc.message}"
            raise
        state.last_ok, state.last_error = self._clock(), None
        return settled

    async def take(self, client: UpstreamClient, item: PendingItem) -> Taken:
        """Fetch one item, commit it through the node's intake, then confirm it."""
        name = self.settings.name
        bound = log.bind(upstream=name, doc_id=item.doc_id, kind=item.kind)
        known = await self.node.store.upstream_message(name, "in", item.doc_id)
        if known is not None:  # ours already: the upstream did not record our done
            await client.confirm(item.doc_id, ok=True)
            bound.info("bridge.taken_again", message_id=known)
            return Taken(item.doc_id, "again", known)
        said = self._refused.get(item.doc_id)
        if said is not None:  # refused before, and listed again: the same answer, no fetch
            await client.confirm(item.doc_id, ok=False, reason=said)
            return Taken(item.doc_id, "refused-again", reason=said)
        try:
            data = await client.fetch(item.doc_id)
        except SenderFault as refused:  # this item, not the upstream: say so, go on
            reason = f"[{refused.code}] {refused.message}"[:500]
            return await self._refuse(client, item, reason, bound)
        if len(data) > self.settings.max_bytes:
            reason = f"[package.too_large] over the {self.settings.max_bytes}-byte cap"
            return await self._refuse(client, item, reason, bound)
        answer = await self._submit(data)
        if answer.outcome in ("accepted", "duplicate") and answer.message_id:
            first = await self.node.store.link_upstream(
                name, "in", item.doc_id, answer.message_id, self._clock()
            )
            await self._record(first, item.doc_id, "in", [])
            await client.confirm(item.doc_id, ok=True)
            bound.info(
                "bridge.taken",
                message_id=first,
                outcome=answer.outcome,
                level=answer.level,
                held=answer.reason if answer.level == "quarantined" else None,
            )
            return Taken(item.doc_id, "taken", first, answer.reason)
        if answer.outcome == "retry":  # the node tries it again: no word to the upstream yet
            bound.warning("bridge.retry", code=answer.code, reason=answer.reason)
            return Taken(item.doc_id, "retry", reason=answer.reason)
        reason = f"[{answer.code}] {answer.reason or answer.outcome}"[:500]
        return await self._refuse(client, item, reason, bound)

    async def _refuse(
        self,
        client: UpstreamClient,
        item: PendingItem,
        reason: str,
        bound: structlog.typing.FilteringBoundLogger,
    ) -> Taken:
        """Answer ``fail`` with the reason, and remember it: an upstream that lists the
        item again gets the same answer without a second fetch."""
        await client.confirm(item.doc_id, ok=False, reason=reason)
        self._refused[item.doc_id] = reason
        while len(self._refused) > REFUSALS_KEPT:
            del self._refused[next(iter(self._refused))]
        bound.warning("bridge.refused", reason=reason)
        return Taken(item.doc_id, "refused", reason=reason)

    async def _submit(self, data: bytes) -> Answer:
        delivery = LocalDelivery(
            Message(
                data,
                message_id=str(uuid.uuid4()),
                user_id=self.user_id,
                headers={SOURCE_HEADER: self.settings.source},
            )
        )
        return await self.node.handle_submission(delivery)

    # --- push ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._push_ready.set()

    async def push_once(self) -> int:
        """Send the outbox rows routed to the upstream, oldest first. Returns how many
        rows were settled; raises when the upstream cannot take them now. Each row is
        taken from the store just before it is sent: a store shared by several service
        instances leases it to this one from then on (each send has its own deadline,
        and the lease does not have to outlast a whole batch of them)."""
        store = self.node.store
        settled = 0
        for _ in range(SEND_BATCH):
            claimed = await store.pending_outbox(1, only_prefix=f"{self.settings.node}/")
            if not claimed:
                break
            (row,) = claimed
            try:
                await self._send(row)
            except (UpstreamRefused, SenderFault) as refused:
                if isinstance(refused, UpstreamUnauthorised):
                    raise
                await self._give_up(row, f"{self.settings.name} refused it: {refused.message}")
            except TransientFault:
                if self._expired(row):
                    await self._give_up(row, f"{self.settings.name} did not take it in time")
                    settled += 1
                    continue
                raise
            settled += 1
        self.state.send_error = None
        return settled

    def _expired(self, row: OutboxRow) -> bool:
        expiry = self.node.settings.link_expiry
        return row.created_at is not None and row.created_at < self._clock() - expiry

    def _behind(self, recipients: Sequence[str]) -> list[str]:
        topology = self.node.settings.topology
        here = self.node.settings.node_id
        if topology is None:
            return list(recipients)
        current = (topology.current_code(r) for r in recipients)  # an oldCode: its agency now
        return list(
            dict.fromkeys(r for r in current if topology.next_hop(here, r) == self.settings.node)
        )

    async def _send(self, row: OutboxRow) -> None:
        store = self.node.store
        data = await store.package_bytes(row.digest)
        record = envelope_record(await store.envelope(row.message_id))
        recipients = self._behind([str(r) for r in record.get("recipients", [])])
        sender = row.sender or str(record.get("sender", ""))
        credential = self.settings.credential_for(sender)
        if credential is None or credential.name not in self.clients:
            raise UpstreamRefused(f"no credential of {self.settings.name} sends for {sender}")
        if self.settings.trace_organ:
            at = self._clock().astimezone(VIETNAM)  # the axis's timestamps are local time
            data = append_trace_header(data, self.settings.trace_organ, at)
        node, _lane = split_target(row.target)
        assert node == self.settings.node
        doc_id = await self.clients[credential.name].send(
            data, kind=row.kind or "edoc", sender=sender, recipients=recipients
        )
        await store.link_upstream(self.settings.name, "out", doc_id, row.message_id, self._clock())
        events = self._bridged(row.message_id, doc_id, "out", recipients, row)
        await store.finish_outbox([], [row.id], [], events)
        self.node.reports.note(events)
        self.state.sent += 1
        log.info(
            "bridge.sent",
            upstream=self.settings.name,
            message_id=row.message_id,
            doc_id=doc_id,
            recipients=recipients,
            credential=credential.name,
        )

    async def _give_up(self, row: OutboxRow, reason: str) -> None:
        record = envelope_record(await self.node.store.envelope(row.message_id))
        now, me = self._clock(), self.node.settings.node_id
        events = [
            reporting.failed(
                message_id=row.message_id,
                document_id=row.document_id,
                sender=row.sender,
                organ=organ,
                reason=reason,
                here=me,
                at=now,
                origin=row.origin,
            )
            for organ in self._behind([str(r) for r in record.get("recipients", [])])
        ]
        await self.node.store.finish_outbox([], [], [(row.id, reason)], events)
        self.node.reports.note(events)
        log.warning("bridge.gave_up", upstream=self.settings.name, message_id=row.message_id)

    # --- evidence -----------------------------------------------------------------------

    def _bridged(
        self,
        message_id: str,
        doc_id: str,
        direction: str,
        recipients: Sequence[str],
        row: OutboxRow | None = None,
    ) -> list[Event]:
        me = self.node.settings.node_id
        origin = row.origin if row is not None else None
        return [
            Event(
                EventKind.BRIDGED,
                f"bridged|{message_id}|{self.settings.name}|{direction}|{doc_id}",
                self._clock(),
                me,
                message_id=message_id,
                document_id=row.document_id if row is not None else None,
                sender=row.sender if row is not None else None,
                digest=row.digest if row is not None else None,
                detail={
                    "upstream": self.settings.name,
                    "direction": direction,
                    "doc_id": doc_id,
                    "recipients": list(recipients),
                },
                report_to=origin if origin and origin != me else None,
            )
        ]

    async def _record(
        self, message_id: str, doc_id: str, direction: str, recipients: Sequence[str]
    ) -> None:
        await self.node.store.record_events(
            self._bridged(message_id, doc_id, direction, recipients)
        )

    # --- agencies -----------------------------------------------------------------------

    async def sync_agencies(self) -> int:
        """Fetch the upstream's agency list (with the first credential) and route to it."""
        client = self.clients[next(iter(self.clients))]
        agencies = await client.agencies()
        self.node.set_upstream_agencies(self.settings.name, agencies)
        self.state.agencies, self.state.agencies_at = len(agencies), self._clock()
        self._save(agencies)
        log.info("bridge.agencies", upstream=self.settings.name, count=len(agencies))
        return len(agencies)

    def _save(self, agencies: Sequence[UpstreamAgency]) -> None:
        if self._cache is None:
            return
        rows = [
            {
                "organ_id": a.organ_id,
                "name": a.name,
                "old_codes": list(a.old_codes),
                "parent": a.parent,
                "mail": a.mail,
            }
            for a in agencies
        ]
        write_atomically(self._cache, json.dumps(rows, ensure_ascii=False).encode())

    def load_agencies(self) -> int:
        """The list kept by the last sync, routed to until a new one comes."""
        if self._cache is None or not self._cache.exists():
            return 0
        try:
            rows = json.loads(self._cache.read_bytes())
            agencies = [
                UpstreamAgency(
                    str(r["organ_id"]),
                    str(r.get("name", "")),
                    tuple(str(o) for o in r.get("old_codes", [])),
                    r.get("parent"),
                    str(r.get("mail", "")),
                )
                for r in rows
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("bridge.agency_cache_unreadable", path=str(self._cache), error=str(exc))
            return 0
        self.node.set_upstream_agencies(self.settings.name, agencies)
        self.state.agencies = len(agencies)
        return len(agencies)
