"""How often a caller may call: a token bucket per client, in memory (the HTTP faces per
credential, the AMQP intake per login)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``rate_per_s`` calls a second on average, ``burst`` at once after a quiet spell.

    The clock is injected (seconds, monotonic) so that tests move time themselves."""

    def __init__(
        self, rate_per_s: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and a burst of at least 1")
        self._rate = rate_per_s
        self._burst = burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now

    def take(self) -> bool:
        """One call: True if it may go ahead (a token is spent), False if it must wait."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        """How long until the next call may go ahead (0 if it may now)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self._rate)
