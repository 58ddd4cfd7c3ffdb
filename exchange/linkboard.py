"""What this node knows of each link and upstream right now: up, down or not yet known,
since when, the last error, and how far a neighbour's clock seems from ours.

The node marks a link as it uses it (a publish taken, a publish refused, a consumer
lost); the operator surface adds what only the broker can tell (whether a child's
consumer is attached to its lane). A state changes its ``since`` only when it changes,
so "down since 10:02" stays 10:02 however often the link is found down again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

UP, DOWN, UNKNOWN = "up", "down", "unknown"
PARENT, CHILD, UPSTREAM = "parent", "child", "upstream"


@dataclass(frozen=True)
class LinkState:
    neighbour: str
    role: str  # parent, child or upstream
    state: str = UNKNOWN
    since: datetime | None = None
    last_error: str | None = None
    offset_s: float | None = None  # the neighbour's clock minus ours, from its hop records
    heard_at: datetime | None = None  # when that was measured


class LinkBoard:
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self._links: dict[str, LinkState] = {}

    def know(self, neighbour: str, role: str) -> None:
        """A link this node has, before anything is known of it."""
        self._links.setdefault(neighbour, LinkState(neighbour, role))

    def up(self, neighbour: str, role: str) -> None:
        self._set(neighbour, role, UP, None)

    def down(self, neighbour: str, role: str, error: str) -> None:
        self._set(neighbour, role, DOWN, error)

    def heard(self, neighbour: str, role: str, their_time: datetime, now: datetime) -> None:
        """A hop record the neighbour signed at ``their_time`` reached us at ``now``: their
        clock is ahead of ours by at most this (transit makes it look behind)."""
        self.know(neighbour, role)
        offset = (their_time - now).total_seconds()
        self._links[neighbour] = replace(self._links[neighbour], offset_s=offset, heard_at=now)

    def get(self, neighbour: str) -> LinkState | None:
        return self._links.get(neighbour)

    def states(self) -> list[LinkState]:
        order = {PARENT: 0, CHILD: 1, UPSTREAM: 2}
        return sorted(self._links.values(), key=lambda s: (order.get(s.role, 3), s.neighbour))

    def _set(self, neighbour: str, role: str, state: str, error: str | None) -> None:
        known = self._links.get(neighbour) or LinkState(neighbour, role)
        if known.state == state:
            if error is not None and error != known.last_error:
                self._links[neighbour] = replace(known, last_error=error)
            return
        self._links[neighbour] = replace(
            known,
            role=role,
            state=state,
            since=self._clock(),
            last_error=error if state == DOWN else known.last_error,
        )
