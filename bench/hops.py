"""Where a routed package's time goes, read from the destination node's store.

Each node signs the time it took the package into its hop record (exchange/envelope.py):
the entry node when it seals the envelope (after admission, before its commit), every
later node when it appends its hop (after the link delivery arrives, before its commit).
The mailbox row carries the time the relay wrote it. With the submission time, that cuts
one package's route into legs. The clocks are one machine's; hop times have millisecond
grain.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import statistics
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path


def _at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def legs(db: Path, organ: str, submitted: Mapping[str, float]) -> list[tuple[str, float]]:
    """Median milliseconds of each leg over the given messages (message id -> submission
    time, ``time.time()``): submission to the entry node's seal, hop to hop, the last hop
    to the mailbox row."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        rows = connection.execute(
            "SELECT p.message_id, p.envelope, m.delivered_at FROM mailbox m "
            "JOIN packages p ON p.message_id = m.message_id WHERE m.organ_id = ?",
            (organ,),
        ).fetchall()
    names: list[str] = []
    spans: list[list[float]] = []
    for message_id, wire, delivered in rows:
        if message_id not in submitted:
            continue
        hops = json.loads(wire)["hops"]
        times = [submitted[message_id]] + [_at(h["at"]) for h in hops] + [_at(delivered)]
        labels = (
            [f"submitted → {hops[0]['node']} sealed"]
            + [f"{a['node']} → {b['node']}" for a, b in itertools.pairwise(hops)]
            + [f"{hops[-1]['node']} → mailbox row"]
        )
        if not names:
            names, spans = labels, [[] for _ in labels]
        for index, (start, end) in enumerate(itertools.pairwise(times)):
            spans[index].append((end - start) * 1000)
    return [(name, statistics.median(values)) for name, values in zip(names, spans, strict=True)]
