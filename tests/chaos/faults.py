"""Faults on a schedule the suite draws from a seed and records: what was done, to what,
when, and for how long. One fault at a time, each healed before the next begins.

- ``kill``: SIGKILL a node's process; a new one starts ``down_s`` later.
- ``rabbitmq``: restart the broker (every node's connections and links drop).
- ``postgres``: stop PostgreSQL the hard way and start it (the node on it loses its pool).
- ``link``: cut a child's link at its proxy; restored ``down_s`` later.
- ``enospc``: a node's store refuses writes with ENOSPC for ``down_s``.

On a RabbitMQ cluster, instead of restarting "the broker":

- ``leader``: SIGKILL the broker node leading a random node's inbound queue; it is started
  again ``down_s`` later and rejoins;
- ``partition``: freeze a broker node (SIGSTOP) for twice ``net_ticktime``, so the others
  count it gone; then thaw it and heal the partition (RabbitMQ's own recovery).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tests.chaos.rabbit_cluster import NET_TICKTIME_S
from tests.chaos.stand import Stand

KINDS = ("kill", "link", "enospc", "rabbitmq", "postgres")
WEIGHTS = (4, 3, 2, 1, 1)  # broker and database restarts are the slow ones
CLUSTER_KINDS = ("leader", "partition", "kill", "enospc", "postgres")
CLUSTER_WEIGHTS = (3, 2, 3, 2, 1)


@dataclass
class Fault:
    at_s: float  # planned, from the start of the run
    kind: str
    target: str  # a node, or the service
    down_s: float  # how long the fault lasts before it is healed (restarts: as long as they take)
    began_s: float | None = None  # as done
    healed_s: float | None = None


def schedule(
    stand: Stand, *, seconds: float, every_s: float, seed: int, cover: bool = True
) -> list[Fault]:
    """Faults for a run of ``seconds``, about one per ``every_s``; with ``cover``, the first
    ones are one of each kind, so that even a short run meets every fault."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = every_s / 2
    every, weights = (CLUSTER_KINDS, CLUSTER_WEIGHTS) if stand.cluster else (KINDS, WEIGHTS)
    kinds = list(every) if cover else []
    while at < seconds:
        kind = kinds.pop(0) if kinds else rng.choices(every, weights)[0]
        if kind == "kill":
            target, down = rng.choice(stand.nodes), rng.uniform(0.5, 4)
        elif kind == "link":
            target, down = rng.choice(stand.children), rng.uniform(2, 12)
        elif kind == "enospc":
            target, down = rng.choice(stand.nodes), rng.uniform(2, 8)
        elif kind == "leader":
            target, down = rng.choice(stand.nodes), rng.uniform(3, 10)
        elif kind == "partition":
            target, down = str(rng.randrange(3)), 2.0 * NET_TICKTIME_S
        else:
            target, down = kind, 0.0
        faults.append(Fault(round(at, 2), kind, target, round(down, 2)))
        at += every_s * rng.uniform(0.6, 1.4)
    return faults


class Injector:
    def __init__(self, stand: Stand, faults: Sequence[Fault], record: Path) -> None:
        self.stand, self.faults, self.record = stand, list(faults), record
        self.done: list[Fault] = []

    async def run(self, started: float, until_s: float) -> None:
        """Inject the faults due before ``until_s`` (seconds since ``started``)."""
        for fault in self.faults:
            if fault.at_s >= until_s:
                break
            await asyncio.sleep(max(0.0, started + fault.at_s - time.monotonic()))
            fault.began_s = round(time.monotonic() - started, 2)
            await self._inject(fault)
            fault.healed_s = round(time.monotonic() - started, 2)
            self.done.append(fault)
            self._write()

    async def _inject(self, fault: Fault) -> None:
        stand = self.stand
        if fault.kind == "kill":
            await asyncio.to_thread(stand.kill_node, fault.target)
            await asyncio.sleep(fault.down_s)
            stand.start_node(fault.target)
        elif fault.kind == "link":
            stand.proxies[fault.target].cut()
            await asyncio.sleep(fault.down_s)
            stand.proxies[fault.target].passthrough()
        elif fault.kind == "enospc":
            stand.enospc(fault.target, True)
            await asyncio.sleep(fault.down_s)
            stand.enospc(fault.target, False)
        elif fault.kind == "rabbitmq":
            await asyncio.to_thread(stand.broker.restart)
        elif fault.kind == "postgres":
            await asyncio.to_thread(stand.postgres.restart)
        elif fault.kind == "leader":
            cluster = stand.cluster
            assert cluster is not None
            leader = await asyncio.to_thread(cluster.leader_of, f"lienthong.{fault.target}.inbound")
            fault.target = f"{fault.target} (broker {leader + 1})"
            await asyncio.to_thread(cluster.kill, leader)
            await asyncio.sleep(fault.down_s)
            await asyncio.to_thread(cluster.start, leader)
        elif fault.kind == "partition":
            cluster, frozen = stand.cluster, int(fault.target)
            assert cluster is not None
            fault.target = f"broker {frozen + 1}"
            cluster.freeze(frozen)
            await asyncio.sleep(fault.down_s)
            cluster.thaw(frozen)
            await asyncio.to_thread(cluster.heal, frozen, 10.0)
        else:
            raise ValueError(f"no such fault: {fault.kind}")

    def counts(self) -> dict[str, int]:
        return dict(Counter(f.kind for f in self.done))

    def _write(self) -> None:
        self.record.write_text(
            json.dumps([asdict(f) for f in self.done], indent=1), encoding="utf-8"
        )
