"""When rows appear in another process's SQLite table, seen from outside.

The benchmarks time a package to the row that makes it visible to a reader (a mailbox
row, the baseline's delivered row). ``Arrivals`` reads the table read-only, only the rows
after the last one it saw (by rowid), and notes the time it first saw each key; the poll
interval is the grain of every figure it yields, and is the same for every system.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from dataclasses import dataclass
from pathlib import Path


class Arrivals:
    def __init__(self, db: Path, table: str, key: str, where: str = "1") -> None:
        self.db = db
        self._sql = f"SELECT rowid, {key} FROM {table} WHERE rowid > ? AND ({where}) ORDER BY rowid"
        self._connection: sqlite3.Connection | None = None
        self._last = 0
        self.seen: dict[str, float] = {}  # key -> time.perf_counter() when first seen

    def poll(self) -> int:
        """Read the new rows; returns how many keys have been seen in all."""
        if self._connection is None:
            if not self.db.exists():
                return len(self.seen)
            self._connection = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            rows = self._connection.execute(self._sql, (self._last,)).fetchall()
        except sqlite3.OperationalError:  # the table is not created yet
            return len(self.seen)
        now = time.perf_counter()
        for rowid, key in rows:
            self._last = max(self._last, rowid)
            self.seen.setdefault(str(key), now)
        return len(self.seen)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass(frozen=True)
class Run:
    count: int
    throughput: float  # packages per second, first submission to last arrival
    p50_ms: float
    p99_ms: float


def summarise(latencies: list[float], elapsed: float) -> Run:
    ordered = sorted(latencies)
    return Run(
        count=len(ordered),
        throughput=len(ordered) / elapsed,
        p50_ms=statistics.median(ordered) * 1000,
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )
