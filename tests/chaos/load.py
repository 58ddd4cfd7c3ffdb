"""Steady load from several agencies, as their document systems would send it: each
sender submits signed documents over AMQP to its home node at a paced rate, and a
submission that gets no answer (its node was killed, the broker restarted, a disk was
full) is sent again, the same bytes, until the node answers ``accepted`` or ``duplicate``.
What each sender was told is the ledger's account of what was accepted.

The load and the ledger run against any ``Tree``: the chaos stand (tests/chaos/stand.py),
or one node served by two instances (tests/integration/test_scaleout_cluster.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from adapters.client import NodeClient
from adapters.sandbox_tree import Topology
from adapters.store_postgres import PostgresStore
from adapters.store_sqlite import SqliteStore

BATCH_EVERY_S = 0.25  # a sender submits what is due in one request, four times a second
ANSWER_TIMEOUT_S = 20.0
RETRY_PAUSE_S = 1.0
AT_ONCE = 4  # batches in flight per sender
TRANSIENT_REFUSALS = {"node.draining", "store.disk_full", "intake.rate_limited"}


class Tree(Protocol):
    """What the load and the ledger need of the nodes they run against: where each agency
    lives, the brokers' URLs, a signed document, and each node's store (opened anew)."""

    topology: Topology
    urls: list[str]

    @property
    def nodes(self) -> list[str]: ...

    def document(self, sender: str, recipients: Sequence[str], number: int) -> bytes: ...

    def open_store(self, node: str) -> SqliteStore | PostgresStore: ...


@dataclass(frozen=True)
class Sent:
    message_id: str
    sender: str
    recipients: tuple[str, ...]
    digest: str
    number: int
    outcome: str  # accepted | duplicate (answered again after a retry)


@dataclass
class Tally:
    sent: list[Sent] = field(default_factory=list)
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # number, code, reason
    retries: int = 0
    latencies: list[float] = field(default_factory=list)  # submit to answer, seconds
    errors: dict[str, int] = field(default_factory=dict)  # why a batch was sent again


class Load:
    """``senders`` submit to random recipients among ``agencies`` (one or two each), at
    ``rate`` packages per second in all."""

    def __init__(
        self,
        stand: Tree,
        senders: Sequence[str],
        agencies: Sequence[str],
        rate: float,
        seed: int = 11,
    ) -> None:
        self.stand, self.senders, self.agencies = stand, list(senders), list(agencies)
        self.rate = rate
        self.random = random.Random(seed)
        self.tally = Tally()
        self._numbers = iter(range(100_000, 10**9))
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for sender in self.senders:
            self._tasks.append(asyncio.create_task(self._sender(sender), name=f"load {sender}"))

    async def stop(self) -> None:
        """Stop submitting new documents; wait until every one submitted has its answer."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _sender(self, sender: str) -> None:
        home = self.stand.topology.node_of(sender)
        per_batch = self.rate / len(self.senders) * BATCH_EVERY_S
        owed = 0.0
        gate = asyncio.Semaphore(AT_ONCE)
        batches: set[asyncio.Task[None]] = set()
        client: list[NodeClient | None] = [None]
        next_at = time.monotonic()
        while not self._stop.is_set():
            owed += per_batch
            count, owed = int(owed), owed - int(owed)
            if count:
                await gate.acquire()
                work = [self._package(sender) for _ in range(count)]
                task = asyncio.create_task(self._submit(home, sender, work, client, gate))
                batches.add(task)
                task.add_done_callback(batches.discard)
            next_at += BATCH_EVERY_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*batches)
        if client[0] is not None:
            with contextlib.suppress(Exception):
                await client[0].__aexit__(None, None, None)

    def _package(self, sender: str) -> tuple[int, tuple[str, ...], bytes]:
        number = next(self._numbers)
        others = [a for a in self.agencies if a != sender]
        recipients = tuple(self.random.sample(others, self.random.choice((1, 1, 2))))
        return number, recipients, self.stand.document(sender, recipients, number)

    async def _submit(
        self,
        home: str,
        sender: str,
        work: list[tuple[int, tuple[str, ...], bytes]],
        client: list[NodeClient | None],
        gate: asyncio.Semaphore,
    ) -> None:
        """Until every package of ``work`` has its answer; the client is shared by the
        sender's batches and replaced when a call on it fails."""
        try:
            started = time.monotonic()
            while work:
                try:
                    if client[0] is None:
                        fresh = NodeClient(self.stand.urls, home, timeout_s=ANSWER_TIMEOUT_S)
                        await fresh.__aenter__()
                        client[0] = fresh
                    answers = await client[0].submit([w[2] for w in work], as_organ=sender)
                except (Exception, asyncio.CancelledError) as exc:
                    # an agency system tries again, whatever failed; aio-pika may cancel a
                    # call whose channel it lost: only our own cancellation ends the batch
                    task = asyncio.current_task()
                    if isinstance(exc, asyncio.CancelledError) and task and task.cancelling():
                        raise
                    self._note(type(exc).__name__)
                    broken, client[0] = client[0], None
                    if broken is not None:
                        with contextlib.suppress(Exception):
                            await broken.__aexit__(None, None, None)
                    self.tally.retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                again = []
                for (number, recipients, data), answer in zip(work, answers, strict=True):
                    if answer.outcome in ("accepted", "duplicate") and answer.message_id:
                        self.tally.sent.append(
                            Sent(
                                answer.message_id,
                                sender,
                                recipients,
                                hashlib.sha256(data).hexdigest(),
                                number,
                                answer.outcome,
                            )
                        )
                    elif answer.code in TRANSIENT_REFUSALS or answer.outcome == "dead-lettered":
                        self._note(f"answer {answer.outcome} {answer.code}")
                        again.append((number, recipients, data))
                    else:
                        self.tally.refused.append(
                            (number, str(answer.code), str(answer.reason or answer.outcome))
                        )
                if again:
                    self.tally.retries += 1
                    await asyncio.sleep(RETRY_PAUSE_S)
                work = again
            self.tally.latencies.append(time.monotonic() - started)
        finally:
            gate.release()

    def _note(self, why: str) -> None:
        self.tally.errors[why] = self.tally.errors.get(why, 0) + 1
