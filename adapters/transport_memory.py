"""An in-memory transport for unit tests: the same contract as RabbitMQ where it can be.

Queues are FIFO lists in this process. A publish to an undeclared queue raises
``Unroutable``; a bounded queue refuses a publish past its byte limit; an unacked
delivery goes back to the queue, marked redelivered, when its consumer stops or it is
rejected with requeue. It has no broker, so it cannot lose confirms or block.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from exchange.transport import Message, PublishFailed, QueueInfo, QueueSpec, Unroutable


@dataclass
class _Queue:
    spec: QueueSpec
    ready: deque[tuple[Message, bool]] = field(default_factory=deque)
    wakeup: asyncio.Condition = field(default_factory=asyncio.Condition)
    consumers: int = 0

    def size_bytes(self) -> int:
        return sum(len(m.body) for m, _ in self.ready)


class MemoryDelivery:
    def __init__(self, queue: _Queue, message: Message, redelivered: bool) -> None:
        self._queue = queue
        self._message = message
        self._redelivered = redelivered
        self.settled = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def redelivered(self) -> bool:
        return self._redelivered

    async def ack(self) -> None:
        self.settled = True
        async with self._queue.wakeup:
            self._queue.wakeup.notify_all()

    async def reject(self, *, requeue: bool) -> None:
        self.settled = True
        async with self._queue.wakeup:
            if requeue:
                self._queue.ready.appendleft((self._message, True))
            self._queue.wakeup.notify_all()


class MemoryTransport:
    def __init__(self) -> None:
        self.queues: dict[str, _Queue] = {}
        self.published: list[tuple[str, Message]] = []
        # exchange -> routing key -> the queue bound to it under that key
        self.bound: dict[str, dict[str, str]] = {}

    async def declare(self, spec: QueueSpec) -> None:
        self.queues.setdefault(spec.name, _Queue(spec))
        if spec.exchange is not None:
            self.bound.setdefault(spec.exchange, {})[spec.routing_key or spec.name] = spec.name

    async def publish(
        self, queue: str, message: Message, *, timeout: float, exchange: str = ""
    ) -> None:
        del timeout
        if exchange:  # through an exchange: to what is bound under that routing key
            bound = self.bound.get(exchange, {}).get(queue)
            target = self.queues.get(bound) if bound is not None else None
        else:
            target = self.queues.get(queue)
        if target is None:
            raise Unroutable(f"no queue {queue!r} took the message")
        limit = target.spec.max_length_bytes
        if limit is not None and target.size_bytes() + len(message.body) > limit:
            raise PublishFailed(f"queue {queue!r} is full ({limit} bytes)")
        self.published.append((queue, message))
        async with target.wakeup:
            target.ready.append((message, False))
            target.wakeup.notify_all()

    async def consume(self, queue: str, *, prefetch: int) -> AsyncGenerator[MemoryDelivery, None]:
        source = self.queues.get(queue)
        if source is None:
            raise Unroutable(f"no queue {queue!r} to consume from")
        in_flight: list[MemoryDelivery] = []
        source.consumers += 1
        try:
            while True:
                async with source.wakeup:
                    while not source.ready or sum(not d.settled for d in in_flight) >= prefetch:
                        await source.wakeup.wait()
                    message, redelivered = source.ready.popleft()
                delivery = MemoryDelivery(source, message, redelivered)
                in_flight = [d for d in in_flight if not d.settled] + [delivery]
                yield delivery
                async with source.wakeup:
                    source.wakeup.notify_all()
        finally:
            source.consumers -= 1
            for delivery in in_flight:
                if not delivery.settled:
                    source.ready.appendleft((delivery.message, True))

    async def inspect(self, queue: str) -> QueueInfo | None:
        found = self.queues.get(queue)
        return None if found is None else QueueInfo(queue, len(found.ready), found.consumers)

    def depth(self, queue: str) -> int:
        return len(self.queues[queue].ready)

    async def close(self) -> None:
        return None
