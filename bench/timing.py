"""Alternating A/B timing inside one process."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Pair:
    ours_us: list[float]  # per-operation time of each round, microseconds
    base_us: list[float]

    @property
    def ratios(self) -> list[float]:
        return [a / b for a, b in zip(self.ours_us, self.base_us, strict=True)]


def _per_op(fn: Callable[[], object], iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations * 1e6


def alternate(
    ours: Callable[[], object], base: Callable[[], object], *, rounds: int, iterations: int
) -> Pair:
    ours(), base()  # warm caches, compile schemas
    ours_us, base_us = [], []
    for index in range(rounds):
        if index % 2:
            base_us.append(_per_op(base, iterations))
            ours_us.append(_per_op(ours, iterations))
        else:
            ours_us.append(_per_op(ours, iterations))
            base_us.append(_per_op(base, iterations))
    return Pair(ours_us, base_us)


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    middle, low, high = statistics.median(values), min(values), max(values)
    return f"{fmt.format(middle)} ({fmt.format(low)}–{fmt.format(high)})"
