"""Holding back callers that keep being refused, at the HTTP faces.

A refused request costs the node little, but not nothing: a request head parsed, a body
drained, an answer written. A caller that keeps calling with a wrong token or HMAC, or past
its rate, as fast as the node answers (a misconfigured document system retrying in a loop,
or an attacker) would take a share of the node's time from every other agency. So:

- an unauthenticated request (401) from an address that has had more than ``burst`` such
  answers lately (``per_s`` a second on average) is answered after ``hold_s``;
- a request refused for its caller's rate (429) is answered when the caller's own bucket
  would let its next request through, after at most ``hold_s``: a caller that waits for each
  answer is held to its rate.

At most ``most_held`` answers are held at once; past that they go out at once, so holding
never grows without bound. A caller that does not wait for its answers is not slowed by the
hold; what bounds it is the cost of each refusal. ``hold_s`` 0 turns the brake off."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from adapters.rate_limit import TokenBucket

PER_S, BURST = 5.0, 10.0  # unauthenticated answers a second from one address, answered at once
MOST_HELD = 1024  # answers held at once, over every address and caller
ADDRESSES = 4096  # addresses remembered; the least recently refused is forgotten first


class RefusalBrake:
    def __init__(
        self,
        hold_s: float,
        *,
        per_s: float = PER_S,
        burst: float = BURST,
        most_held: int = MOST_HELD,
        addresses: int = ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold_s = hold_s
        self._per_s, self._burst, self._clock = per_s, burst, clock
        self._most_held, self._addresses = most_held, addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self.held = 0  # answers being held now
        self.held_total = 0  # answers held since the start

    def _bucket(self, address: str) -> TokenBucket:
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = TokenBucket(self._per_s, self._burst, self._clock)
            while len(self._buckets) >= self._addresses:
                self._buckets.popitem(last=False)
        self._buckets[address] = bucket  # the most recently refused, last
        return bucket

    async def unauthenticated(self, address: str | None) -> None:
        """Before a 401 goes out: held if its address has been refused too often lately."""
        if self.hold_s <= 0 or self._bucket(address or "?").take():
            return
        await self._hold(self.hold_s)

    async def rate_limited(self, wait_s: float) -> None:
        """Before a 429 goes out: held until the caller may call again (at most hold_s)."""
        await self._hold(min(self.hold_s, wait_s))

    async def _hold(self, seconds: float) -> None:
        if seconds <= 0 or self.held >= self._most_held:
            return
        self.held += 1
        self.held_total += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.held -= 1
