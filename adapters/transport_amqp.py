"""The transport over RabbitMQ, with aio-pika.

- one robust connection, which reconnects and re-declares by itself; given the URLs of a
  cluster's nodes, it tries them in turn, on the first connect and on every reconnect,
  starting with the node after the one it lost (``FailoverConnection``);
- publishes go through the default exchange to a named queue, persistent, ``mandatory``
  (a message no queue takes raises ``Unroutable``), and wait for the publisher confirm
  under a deadline (a broker that is slow, nacks or is blocked by a resource alarm
  raises ``PublishFailed``, never hangs);
- each consumer has its own channel with a bounded prefetch and manual acks;
- queues are durable; quorum queues take a delivery limit; bounded queues refuse
  publishes past ``x-max-length-bytes`` instead of dropping old messages;
- a connection aiormq finds dead (no frame within its heartbeat grace) cancels what
  waits on it: that cancellation is not the caller's, so it is translated too
  (``PublishFailed``, ``TransientFault``) instead of ending the caller's task.

aio-pika and aiormq errors are translated here, at the seam, into the node's own tree.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncGenerator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from yarl import URL

from exchange.errors import TransientFault
from exchange.transport import Message, PublishFailed, QueueInfo, QueueSpec, Unroutable

log = structlog.get_logger("lienthong.transport")


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection to whichever node of a cluster answers.

    aio-pika's robust connection knows one URL and retries it. This one knows all the
    nodes: each connection attempt goes round them once, the first that answers wins
    (one attempt that fails everywhere is what aio-pika retries, after its pause), and
    a connection that is lost moves on to the next node before reconnecting, so a node
    that died is tried last. Channels, queues, consumers and the publisher confirm mode
    are restored by aio-pika on whichever node it reaches: durable and quorum queues are
    the cluster's, not a node's.

    The hook is aio-pika's private ``__connect_transport`` (one attempt); a test in
    tests/integration/test_amqp_failover.py fails should a new aio-pika rename it.
    """

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker URL")
        self._urls = [URL(u) for u in urls]
        self._at = 0
        super().__init__(self._urls[0], **kwargs)

    def _move_on(self) -> None:
        self._at = (self._at + 1) % len(self._urls)
        self.url = self._urls[self._at]

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        if not (self._close_called or self.is_closed) and len(self._urls) > 1:
            self._move_on()
        await super()._on_connection_close(closing)

    async def _RobustConnection__connect_transport(self) -> None:
        attempt = super()._RobustConnection__connect_transport  # type: ignore[misc]
        for left in range(len(self._urls), 0, -1):
            tried = self._at
            try:
                await attempt()
            except CONNECTION_EXCEPTIONS as exc:
                log.warning(
                    "rabbitmq.node_unreachable", url=_safe(str(self._urls[tried])), error=repr(exc)
                )
                if self._at == tried:  # (a failed attempt may have been called a close)
                    self._move_on()
                if left == 1:
                    raise
            else:
                return


class AmqpDelivery:
    def __init__(self, incoming: AbstractIncomingMessage) -> None:
        self._incoming = incoming
        # headers come from anyone who can publish: undecodable bytes are replaced, not raised
        headers = {
            str(k): v
            if isinstance(v, int)
            else (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v))
            for k, v in (incoming.headers or {}).items()
            if v is not None
        }
        self._message = Message(
            body=incoming.body,
            message_id=incoming.message_id,
            headers=headers,
            reply_to=incoming.reply_to,
            correlation_id=incoming.correlation_id,
            priority=incoming.priority or 0,
            user_id=incoming.user_id,
        )

    @property
    def message(self) -> Message:
        return self._message

    @property
    def redelivered(self) -> bool:
        return bool(self._incoming.redelivered)

    async def ack(self) -> None:
        try:
            await self._incoming.ack()
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError) as exc:
            # the channel died with the delivery: the broker will redeliver it
            raise TransientFault(f"could not acknowledge a delivery: {exc!r}") from exc

    async def reject(self, *, requeue: bool) -> None:
        try:
            await self._incoming.reject(requeue=requeue)
        except (aiormq.exceptions.AMQPError, aio_pika.exceptions.ChannelInvalidStateError) as exc:
            raise TransientFault(f"could not reject a delivery: {exc!r}") from exc


class AmqpTransport:
    def __init__(
        self,
        url: str | Sequence[str],
        *,
        connect_timeout: float = 10.0,
        heartbeat_s: int | None = None,
        reconnect_interval_s: float = 2.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``url``: one broker, or the nodes of a cluster, tried in turn; ``ssl_context``
        for amqps:// URLs (adapters/tls.py)."""
        urls = [url] if isinstance(url, str) else list(url)
        self._urls = [with_heartbeat(u, heartbeat_s) if heartbeat_s else u for u in urls]
        self._reconnect_interval_s = reconnect_interval_s
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._inspector: AbstractChannel | None = None  # passive declares: a 404 closes it
        self._lock = asyncio.Lock()
        self.lost: str | None = None  # why the connection was last lost, while it is

    async def connect(self) -> None:
        async with self._lock:
            if self._connection is not None:
                return
            try:
                connection = FailoverConnection(
                    self._urls,
                    client_properties={"connection_name": "lienthong"},
                    reconnect_interval=self._reconnect_interval_s,
                    ssl_context=self._ssl_context,
                )
                self._connection = connection
                await connection.connect(timeout=self._connect_timeout)
                self._publisher = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                self._connection = None
                where = ", ".join(_safe(u) for u in self._urls)
                self.lost = f"RabbitMQ unreachable at {where}: {exc}"
                raise TransientFault(self.lost) from exc
            self._connection.close_callbacks.add(self._closed)
            self._connection.reconnect_callbacks.add(self._reconnected)
            self.lost = None

    async def _channel(self) -> AbstractRobustChannel:
        if self._publisher is None:
            await self.connect()
        assert self._publisher is not None
        return self._publisher

    async def declare(self, spec: QueueSpec) -> None:
        arguments: dict[str, Any] = {}
        if spec.quorum:
            arguments["x-queue-type"] = "quorum"
            if spec.delivery_limit is not None:
                arguments["x-delivery-limit"] = spec.delivery_limit
            if spec.dead_letter_to is not None:
                arguments["x-dead-letter-exchange"] = ""
                arguments["x-dead-letter-routing-key"] = spec.dead_letter_to
                arguments["x-dead-letter-strategy"] = "at-least-once"
                arguments["x-overflow"] = "reject-publish"
        if spec.max_length_bytes is not None:
            arguments["x-max-length-bytes"] = spec.max_length_bytes
            arguments["x-overflow"] = "reject-publish"
        channel = await self._channel()
        try:
            queue = await channel.declare_queue(
                spec.name,
                durable=not spec.exclusive,
                exclusive=spec.exclusive,
                auto_delete=spec.exclusive,
                arguments=arguments,
            )
            if spec.exchange is not None:
                exchange = await channel.declare_exchange(
                    spec.exchange, aio_pika.ExchangeType.DIRECT, durable=True
                )
                await queue.bind(exchange, routing_key=spec.routing_key or spec.name)
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TransientFault(
                f"queue {spec.name} exists with other settings than configured: {exc}"
            ) from exc
        except asyncio.CancelledError as exc:
            if _cancelled_by_caller():
                raise
            raise TransientFault(f"declaring {spec.name}: the connection was lost") from exc

    async def publish(
        self, queue: str, message: Message, *, timeout: float, exchange: str = ""
    ) -> None:
        channel = await self._channel()
        outgoing = aio_pika.Message(
            body=message.body,
            message_id=message.message_id,
            headers=dict(message.headers),
            reply_to=message.reply_to,
            correlation_id=message.correlation_id,
            priority=message.priority or None,
            user_id=message.user_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        try:
            target = (
                await channel.get_exchange(exchange, ensure=False)
                if exchange
                else channel.default_exchange
            )
            confirmation = await target.publish(
                outgoing, routing_key=queue, mandatory=True, timeout=timeout
            )
        except aiormq.exceptions.PublishError as exc:
            raise Unroutable(f"no queue {queue!r} took the message: {exc}") from exc
        except aiormq.exceptions.DeliveryError as exc:
            raise PublishFailed(f"RabbitMQ refused the message for {queue!r}: {exc}") from exc
        except TimeoutError as exc:
            raise PublishFailed(
                f"RabbitMQ did not confirm the publish to {queue!r} within {timeout} s "
                "(is it blocked by a memory or disk alarm?)"
            ) from exc
        except (
            aiormq.exceptions.AMQPError,
            aio_pika.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            raise PublishFailed(f"publish to {queue!r} failed: {exc}") from exc
        except asyncio.CancelledError as exc:
            if _cancelled_by_caller():
                raise
            raise PublishFailed(
                f"publish to {queue!r}: the connection was lost before the confirm"
            ) from exc
        if not isinstance(confirmation, aiormq.spec.Basic.Ack):
            raise PublishFailed(
                f"RabbitMQ did not acknowledge the publish to {queue!r}: {confirmation!r}"
            )

    async def consume(self, queue: str, *, prefetch: int) -> AsyncGenerator[AmqpDelivery, None]:
        if self._connection is None:
            await self.connect()
        assert self._connection is not None
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=prefetch)
        declared = await channel.get_queue(queue, ensure=True)
        try:
            async with declared.iterator() as messages:
                async for incoming in messages:
                    yield AmqpDelivery(incoming)
        finally:
            if not channel.is_closed:
                await channel.close()

    async def _passive(self, what: str, declare: Any) -> Any | None:
        """A passive declare on the inspector channel: its result, or None for the broker's
        404 (which closes the channel: a new one is opened next time)."""
        if self._connection is None:
            await self.connect()
        assert self._connection is not None
        try:
            if self._inspector is None or self._inspector.is_closed:
                self._inspector = await self._connection.channel(publisher_confirms=False)
            return await declare(await self._inspector.get_underlay_channel())
        except aiormq.exceptions.ChannelNotFoundEntity:
            self._inspector = None
            return None
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            self._inspector = None
            raise TransientFault(f"looking for {what}: {exc}") from exc

    async def inspect(self, queue: str) -> QueueInfo | None:
        result = await self._passive(
            f"queue {queue}", lambda raw: raw.queue_declare(queue=queue, passive=True)
        )
        if result is None:
            return None
        return QueueInfo(queue, int(result.message_count or 0), int(result.consumer_count or 0))

    async def exchange_exists(self, exchange: str) -> bool:
        """Whether the broker has this exchange (a passive declare; its 404 is an answer)."""
        found = await self._passive(
            f"exchange {exchange}",
            lambda raw: raw.exchange_declare(exchange=exchange, passive=True),
        )
        return found is not None

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed and not self.lost

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection, self._publisher = self._connection, None, None
            self._inspector = None
            await connection.close()

    def _closed(self, _connection: object, exc: BaseException | None = None) -> None:
        if self._connection is not None and exc is not None:  # not a close we asked for
            self.lost = f"connection lost: {exc!r}"
            log.warning("rabbitmq.connection_lost", error=repr(exc))

    def _reconnected(self, connection: object) -> None:
        self.lost = None
        url = getattr(connection, "url", None)
        log.info("rabbitmq.reconnected", url=_safe(str(url)) if url is not None else None)


def with_heartbeat(url: str, seconds: int) -> str:
    """``url`` asking for an AMQP heartbeat of ``seconds``, unless it names one itself.
    aiormq gives a connection up when no frame came for (heartbeat + 1) x 3 seconds."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(key == "heartbeat" for key, _ in query):
        return url
    return urlunsplit(parts._replace(query=urlencode([*query, ("heartbeat", str(seconds))])))


def _cancelled_by_caller() -> bool:
    """For a CancelledError: True when this task is being cancelled (a shutdown), False
    when the library cancelled only what the task waited on (a connection found dead)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _safe(url: str) -> str:
    """The URL without its password, for messages and logs."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"
