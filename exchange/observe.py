"""What a node tells its observer as packages flow: the seam for metrics.

The node calls an ``Observer`` where a package is admitted or refused at intake, where a
copy is routed, where copies land in mailboxes and where agencies acknowledge them. The
observer only counts: no I/O, no answer, nothing the node waits on. ``NO_OBSERVER`` is
the default and does nothing; adapters/metrics.py is the Prometheus one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Protocol

from exchange.links import split_target
from exchange.store import Destination, OutboxItem

MAILBOX_HOP = "mailbox"


class Observer(Protocol):
    def admitted(self, source: str, seconds: float) -> None:
        """A submission accepted at intake from ``source`` after ``seconds`` here."""

    def refused(self, code: str, seconds: float) -> None:
        """A package this node would not take, by error code, after ``seconds`` here."""

    def routed(self, next_hop: str, count: int = 1) -> None:
        """Copies routed on: a neighbour node id, ``mailbox``, or ``upstream:<name>``."""

    def delivered(self, count: int, latency_s: float | None) -> None:
        """``count`` copies of one package written into this node's mailboxes, ``latency_s``
        after its acceptance at the origin node (None when that is not known)."""

    def fetched(self, count: int) -> None:
        """``count`` copies acknowledged by their agency."""


class _NoObserver:
    def admitted(self, source: str, seconds: float) -> None:
        return None

    def refused(self, code: str, seconds: float) -> None:
        return None

    def routed(self, next_hop: str, count: int = 1) -> None:
        return None

    def delivered(self, count: int, latency_s: float | None) -> None:
        return None

    def fetched(self, count: int) -> None:
        return None


NO_OBSERVER: Observer = _NoObserver()


def next_hops(outbox: Iterable[OutboxItem]) -> Counter[str]:
    """Copies per next hop of a committed outbox; a row given up at once goes nowhere."""
    hops: Counter[str] = Counter()
    for item in outbox:
        if item.failure is not None:
            continue
        if item.destination is Destination.MAILBOX:
            hops[MAILBOX_HOP] += 1
        else:
            hops[split_target(item.target)[0]] += 1
    return hops


def observe_routes(observer: Observer, outbox: Iterable[OutboxItem]) -> None:
    for hop, count in sorted(next_hops(outbox).items()):
        observer.routed(hop, count)


def since_origin(record: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds from a package's acceptance at its origin node (``issued_at`` of its
    envelope record) to ``now``; None when the record does not say, or says nonsense."""
    issued = record.get("issued_at")
    if not isinstance(issued, str):
        return None
    try:
        at = datetime.fromisoformat(issued)
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return max((now - at).total_seconds(), 0.0)
