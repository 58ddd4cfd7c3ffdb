"""A small AMQP client for agency systems and the ``send``/``fetch`` commands.

Each call opens a private reply queue (exclusive, gone with the connection), sends its
request to the node's queue with a confirm, and waits for the answer under a deadline.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from adapters.transport_amqp import AmqpTransport
from exchange.errors import NotTracked, TransientFault
from exchange.node import AS_HEADER, OP_HEADER, SOURCE_HEADER, Answer, Queues
from exchange.transport import Delivery, Message, QueueSpec

Acknowledge = Callable[[], Awaitable[None]]
RATE_LIMITED = "intake.rate_limited"
RATE_PAUSE_S = 1.0  # a login's bucket refills at its rate: a second is a burst again


@dataclass(frozen=True)
class Fetched:
    message_id: str
    sender: str
    document_id: str
    kind: str
    data: bytes


class NodeClient:
    def __init__(
        self,
        amqp_url: str | Sequence[str],
        node_id: str,
        *,
        timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        login: str | None = None,
    ) -> None:
        """``amqp_url``: the node's broker, or its cluster's nodes (tried in turn);
        ``ssl_context`` for amqps:// (adapters/tls.py); ``login``: the broker login when
        the URL does not name it (with auth=external, the CN of the client certificate)."""
        self.transport = AmqpTransport(amqp_url, ssl_context=ssl_context)
        first = amqp_url if isinstance(amqp_url, str) else amqp_url[0]
        # RabbitMQ refuses a user_id other than the login; the node trusts only it
        self.user_id = login or urlsplit(first).username or "guest"
        self.queues = Queues(node_id)
        self.gate = self.queues.gate  # the node's shared gate, or this login's own
        self.timeout_s = timeout_s

    async def __aenter__(self) -> NodeClient:
        await self.transport.connect()
        # the login's own gate, when the node keeps a queue for it: what it sends waits
        # behind its own submissions only (docs/amqp-face.md, "Fair share")
        own = self.queues.login_gate(self.user_id)
        if await self.transport.exchange_exists(own):
            self.gate = own
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.transport.close()

    async def _reply_queue(self) -> str:
        # named for the login: a provisioned one may declare and read only its own
        name = f"lienthong.reply.{self.user_id}.{uuid.uuid4().hex}"
        await self.transport.declare(QueueSpec(name, exclusive=True))
        return name

    async def submit(
        self,
        packages: Sequence[bytes],
        *,
        as_organ: str,
        source: str = "amqp",
        wait_for_rate: bool = True,
    ) -> list[Answer]:
        """Send packages; return the node's answer to each, in order. Those the node
        answers ``intake.rate_limited`` (the login's rate) are sent again after a pause,
        for up to ``timeout_s`` in all, unless ``wait_for_rate`` is False: a batch larger
        than the rate takes longer, it is not refused."""
        answers = await self._submit_once(packages, as_organ=as_organ, source=source)
        deadline = time.monotonic() + self.timeout_s
        while wait_for_rate and time.monotonic() < deadline:
            again = [i for i, a in enumerate(answers) if a.code == RATE_LIMITED]
            if not again:
                break
            await asyncio.sleep(RATE_PAUSE_S)
            retried = await self._submit_once(
                [packages[i] for i in again], as_organ=as_organ, source=source
            )
            for i, answer in zip(again, retried, strict=True):
                answers[i] = answer
        return answers

    async def _submit_once(
        self, packages: Sequence[bytes], *, as_organ: str, source: str
    ) -> list[Answer]:
        reply = await self._reply_queue()
        ids = [str(uuid.uuid4()) for _ in packages]
        for data, request_id in zip(packages, ids, strict=True):
            await self.transport.publish(
                self.queues.inbound,
                Message(
                    data,
                    message_id=request_id,
                    reply_to=reply,
                    correlation_id=request_id,
                    user_id=self.user_id,
                    headers={SOURCE_HEADER: source, AS_HEADER: as_organ},
                ),
                timeout=self.timeout_s,
                exchange=self.gate,
            )
        answers: dict[str, Answer] = {}
        stream = self.transport.consume(reply, prefetch=64)
        try:
            async with asyncio.timeout(self.timeout_s):
                while len(answers) < len(ids):
                    delivery = await _next(stream, self.queues.node_id)
                    await delivery.ack()
                    answers[delivery.message.correlation_id or ""] = Answer.decode(
                        delivery.message.body
                    )
        except TimeoutError as exc:
            raise TransientFault(
                f"node {self.queues.node_id} answered {len(answers)} of {len(ids)} package(s) "
                f"within {self.timeout_s} s; is it running?"
            ) from exc
        finally:
            await stream.aclose()
        return [answers[i] for i in ids]

    async def _request(
        self, op: str, as_organ: str, body: bytes = b"", headers: dict[str, str | int] | None = None
    ) -> list[Message]:
        reply = await self._reply_queue()
        correlation = str(uuid.uuid4())
        await self.transport.publish(
            self.queues.requests,
            Message(
                body,
                reply_to=reply,
                correlation_id=correlation,
                user_id=self.user_id,
                headers={OP_HEADER: op, AS_HEADER: as_organ, **(headers or {})},
            ),
            timeout=self.timeout_s,
            exchange=self.gate,
        )
        got: list[Message] = []
        stream = self.transport.consume(reply, prefetch=64)
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    delivery = await _next(stream, self.queues.node_id)
                    await delivery.ack()
                    got.append(delivery.message)
                    if int(delivery.message.headers.get("lienthong-last", 0)):
                        break
        except TimeoutError as exc:
            raise TransientFault(
                f"node {self.queues.node_id} did not answer within {self.timeout_s} s"
            ) from exc
        finally:
            await stream.aclose()
        return got

    async def fetch(self, as_organ: str, *, limit: int = 100) -> list[Fetched]:
        """The packages in the agency's mailbox not yet marked fetched."""
        replies = await self._request("fetch", as_organ, headers={"lienthong-limit": limit})
        last = replies[-1]
        if last.headers.get("lienthong-kind") == "answer":
            answer = Answer.decode(last.body)
            raise TransientFault(f"{answer.code}: {answer.reason}")
        return [
            Fetched(
                message_id=m.message_id or "",
                sender=str(m.headers.get("lienthong-sender", "")),
                document_id=str(m.headers.get("lienthong-document-id", "")),
                kind=str(m.headers.get("lienthong-package-kind", "")),
                data=m.body,
            )
            for m in replies
            if m.headers.get("lienthong-kind") == "package"
        ]

    async def mark_fetched(self, as_organ: str, message_ids: Sequence[str]) -> int:
        replies = await self._request("fetched", as_organ, json.dumps(list(message_ids)).encode())
        return int(json.loads(replies[-1].body).get("marked", 0))

    async def status(self, as_organ: str, ident: str) -> dict[str, Any]:
        """Where a document this agency sent stands at each recipient (by message id or
        DocumentId), as the node it entered at sees it."""
        replies = await self._request("status", as_organ, json.dumps({"id": ident}).encode())
        answer: dict[str, Any] = json.loads(replies[-1].body)
        if answer.get("outcome") != "status":
            raise NotTracked(str(answer.get("reason", "unknown")))
        return answer

    async def receive(
        self, as_organ: str
    ) -> AsyncIterator[tuple[Fetched, Callable[[], Awaitable[None]]]]:
        """A push agency's mail, as the node publishes it: each package with its ``ack``,
        which tells the node the agency has it (fetched) and then settles the delivery.
        Unacked, it comes again (after a reconnect), so nothing is lost."""
        stream = self.transport.consume(self.queues.mailbox(as_organ), prefetch=16)
        try:
            async for delivery in stream:
                m = delivery.message
                item = Fetched(
                    message_id=m.message_id or "",
                    sender=str(m.headers.get("lienthong-sender", "")),
                    document_id=str(m.headers.get("lienthong-document-id", "")),
                    kind=str(m.headers.get("lienthong-package-kind", "")),
                    data=m.body,
                )

                async def ack(item: Fetched = item, delivery: Delivery = delivery) -> None:
                    await self.mark_fetched(as_organ, [item.message_id])
                    await delivery.ack()

                yield item, ack
        finally:
            await stream.aclose()


async def _next(stream: AsyncIterator[Delivery], node_id: str) -> Delivery:
    """The next answer on a reply queue; the queue's end (its connection was lost, and an
    exclusive queue with it) is a transient fault, for the caller to try again."""
    try:
        return await anext(stream)
    except StopAsyncIteration as exc:
        raise TransientFault(
            f"the connection to node {node_id} was lost while waiting for its answer"
        ) from exc
    except asyncio.CancelledError as exc:  # aio-pika cancels a call whose channel it lost
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the caller's own
        raise TransientFault(
            f"the connection to node {node_id} was lost while waiting for its answer"
        ) from exc
