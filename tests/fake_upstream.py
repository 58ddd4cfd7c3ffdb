"""An upstream axis in memory, for the bridge's unit tests: it implements the client
protocol (exchange/upstream.py) the way the real clients behave, and passes the same
contract suite (tests/contract/test_upstream_contract.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from exchange.errors import UpstreamGarbled, UpstreamRefused, UpstreamUnavailable
from exchange.upstream import PendingItem, UpstreamAgency


@dataclass
class Held:
    doc_id: str
    kind: str
    data: bytes
    recipient: str | None = None
    status: str = "initial"  # "initial" | "done" | "fail"


@dataclass
class FakeUpstream:
    agencies_listed: list[UpstreamAgency] = field(default_factory=list)
    held: dict[str, Held] = field(default_factory=dict)
    sent: list[tuple[str, bytes, str, str, tuple[str, ...]]] = field(default_factory=list)
    confirmed: list[tuple[str, bool, str | None]] = field(default_factory=list)
    mode: str = "ok"  # "ok" | "down" | "garbage" | "refuse"
    forget_done: bool = False  # the upstream does not record our done: listed again
    fetches: int = 0
    _next: int = 0

    def put(self, kind: str, data: bytes, recipient: str | None = None) -> str:
        self._next += 1
        doc_id = f"{self._next:024x}"
        self.held[doc_id] = Held(doc_id, kind, data, recipient)
        return doc_id

    def _check(self, call: str) -> None:
        if self.mode == "down":
            raise UpstreamUnavailable(f"{call}: connection refused")
        if self.mode == "garbage":
            raise UpstreamGarbled(f"{call}: answered b'<html>'")

    async def send(self, data: bytes, *, kind: str, sender: str, recipients: Sequence[str]) -> str:
        self._check("sendEdoc")
        if self.mode == "refuse":
            raise UpstreamRefused("sendEdoc: [18] recipient not found")
        self._next += 1
        doc_id = f"out-{self._next}"
        self.sent.append((doc_id, data, kind, sender, tuple(recipients)))
        return doc_id

    async def pending(self, kind: str) -> list[PendingItem]:
        self._check("getReceivedEdocList")
        return [
            PendingItem(h.doc_id, h.kind, None, h.recipient)
            for h in self.held.values()
            if h.kind == kind and h.status == "initial"
        ]

    async def fetch(self, doc_id: str) -> bytes:
        self._check("getEdoc")
        if doc_id not in self.held:
            raise UpstreamRefused(f"getEdoc: [404] no document {doc_id}")
        self.fetches += 1
        return self.held[doc_id].data

    async def confirm(self, doc_id: str, *, ok: bool, reason: str | None = None) -> None:
        self._check("updateStatus")
        if doc_id not in self.held:
            raise UpstreamRefused(f"updateStatus: [404] no document {doc_id}")
        self.confirmed.append((doc_id, ok, reason))
        if not self.forget_done:
            self.held[doc_id].status = "done" if ok else "fail"

    async def agencies(self) -> list[UpstreamAgency]:
        self._check("getAgenciesList")
        return list(self.agencies_listed)

    async def close(self) -> None:
        return None
