"""The transport port: durable queues, confirmed publishes, manual acknowledgements.

adapters/transport_amqp.py implements it over RabbitMQ (aio-pika); adapters/
transport_memory.py is the in-memory fake for unit tests. tests/contract/
test_transport_contract.py runs what both can honour against both.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from exchange.errors import TransientFault


class Unroutable(TransientFault):
    """The broker had no queue for the message; nothing was delivered."""

    code = "transport.unroutable"


class PublishFailed(TransientFault):
    """The broker did not confirm the publish in time, or refused it (nack, blocked)."""

    code = "transport.publish_failed"


@dataclass(frozen=True)
class QueueSpec:
    name: str
    quorum: bool = False
    delivery_limit: int | None = None  # quorum queues: redeliveries before the broker drops
    max_length_bytes: int | None = None  # bounded queues refuse publishes past this
    exclusive: bool = False  # reply queues: gone with the connection
    dead_letter_to: str | None = None  # quorum queues: where the broker's limit sends a message
    # also reachable through this direct exchange, under the queue's name as routing key:
    # a login may be allowed to write to the exchange and no other queue (DESIGN §5)
    exchange: str | None = None
    # the routing key of that binding, when not the queue's name (a login's own intake
    # queue takes, from its own gate, what is addressed to the node's inbound queue)
    routing_key: str | None = None


@dataclass(frozen=True)
class Message:
    body: bytes
    message_id: str | None = None
    headers: Mapping[str, str | int] = field(default_factory=dict)
    reply_to: str | None = None
    correlation_id: str | None = None
    priority: int = 0
    user_id: str | None = None  # set by the publisher, validated by RabbitMQ against its login


@dataclass(frozen=True)
class QueueInfo:
    """A queue as the broker sees it now: messages ready (not yet delivered), consumers."""

    name: str
    messages: int
    consumers: int


class Delivery(Protocol):
    @property
    def message(self) -> Message: ...

    @property
    def redelivered(self) -> bool: ...

    async def ack(self) -> None: ...

    async def reject(self, *, requeue: bool) -> None: ...


class Transport(Protocol):
    async def declare(self, spec: QueueSpec) -> None: ...

    async def publish(
        self, queue: str, message: Message, *, timeout: float, exchange: str = ""
    ) -> None:
        """Publish to a queue (through ``exchange`` when given, else directly) and wait for
        the broker's confirm; raise Unroutable or PublishFailed otherwise. Never returns
        before the message is durable."""

    def consume(self, queue: str, *, prefetch: int) -> AsyncGenerator[Delivery, None]:
        """Deliveries from a queue, at most ``prefetch`` unacknowledged at once."""

    async def inspect(self, queue: str) -> QueueInfo | None:
        """The queue's depth and consumers now; None when it does not exist. Declares
        nothing, so an operator's look never creates a queue."""

    async def close(self) -> None: ...
