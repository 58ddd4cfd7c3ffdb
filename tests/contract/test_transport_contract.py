"""One transport contract, two implementations: the in-memory fake and RabbitMQ.
What only a broker does (confirms under an alarm, redelivery after a lost connection)
is tested against RabbitMQ alone, at the end."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from adapters.transport_amqp import AmqpTransport
from adapters.transport_memory import MemoryTransport
from exchange.transport import Delivery, Message, PublishFailed, QueueSpec, Unroutable
from tests.integration.broker import delete_queues

AMQP_URL = os.environ.get("LIENTHONG_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
Transport = MemoryTransport | AmqpTransport


@pytest.fixture(params=["memory", "rabbitmq"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    if request.param == "memory":
        yield MemoryTransport()
        return
    amqp = AmqpTransport(AMQP_URL)
    await amqp.connect()
    yield amqp
    await amqp.close()


CREATED: list[str] = []


def queue_name() -> str:
    name = f"test.{uuid.uuid4().hex[:12]}"
    CREATED.append(name)
    return name


@pytest.fixture(autouse=True, scope="module")
def _delete_test_queues() -> Iterator[None]:
    """Durable test queues do not outlive the suite on the broker."""
    yield
    asyncio.run(delete_queues(CREATED))  # and the test gates (names ending .gate)
    CREATED.clear()


async def next_delivery(transport: Transport, queue: str, prefetch: int = 10) -> Delivery:
    stream = transport.consume(queue, prefetch=prefetch)
    delivery: Delivery = await asyncio.wait_for(anext(stream), timeout=10)
    return delivery


async def take(stream: AsyncIterator[Delivery]) -> Delivery:
    return await asyncio.wait_for(anext(stream), timeout=10)


async def test_a_published_message_arrives_whole(transport: Transport) -> None:
    queue = queue_name()
    await transport.declare(QueueSpec(queue))
    sent = Message(
        body="<edXML>Tây Ninh</edXML>".encode(),
        message_id="m-1",
        headers={"lienthong-source": "agency-amqp", "attempt": 2},
        reply_to="answers",
        correlation_id="c-1",
    )
    await transport.publish(queue, sent, timeout=5)
    stream = transport.consume(queue, prefetch=5)
    got = await take(stream)
    assert got.message.body == sent.body
    assert (got.message.message_id, got.message.reply_to, got.message.correlation_id) == (
        "m-1",
        "answers",
        "c-1",
    )
    assert got.message.headers["lienthong-source"] == "agency-amqp"
    assert got.message.headers["attempt"] == 2
    assert got.redelivered is False
    await got.ack()
    await stream.aclose()


async def test_a_message_no_queue_takes_is_refused(transport: Transport) -> None:
    with pytest.raises(Unroutable):
        await transport.publish(f"nowhere.{uuid.uuid4().hex}", Message(b"x"), timeout=5)


async def test_a_rejected_message_comes_back_marked_redelivered(transport: Transport) -> None:
    queue = queue_name()
    await transport.declare(QueueSpec(queue))
    await transport.publish(queue, Message(b"again", message_id="m-1"), timeout=5)
    stream = transport.consume(queue, prefetch=1)
    first = await take(stream)
    await first.reject(requeue=True)
    second = await take(stream)
    assert (second.message.body, second.redelivered) == (b"again", True)
    await second.ack()
    await stream.aclose()


async def test_an_unacked_message_goes_to_the_next_consumer(transport: Transport) -> None:
    queue = queue_name()
    await transport.declare(QueueSpec(queue))
    await transport.publish(queue, Message(b"unfinished"), timeout=5)
    stream = transport.consume(queue, prefetch=1)
    await take(stream)
    await stream.aclose()  # the consumer stops without acking
    again = transport.consume(queue, prefetch=1)
    retried = await take(again)
    assert (retried.message.body, retried.redelivered) == (b"unfinished", True)
    await retried.ack()
    await again.aclose()


async def test_a_bounded_queue_refuses_instead_of_dropping(transport: Transport) -> None:
    queue = queue_name()
    await transport.declare(QueueSpec(queue, max_length_bytes=1000))
    await transport.publish(queue, Message(b"a" * 800), timeout=5)
    with pytest.raises(PublishFailed):
        await transport.publish(queue, Message(b"b" * 800), timeout=5)
    stream = transport.consume(queue, prefetch=5)
    kept = await take(stream)
    assert kept.message.body == b"a" * 800  # the older message was not dropped
    await kept.ack()
    await stream.aclose()


# --- RabbitMQ only ----------------------------------------------------------------------


def _is_fraction(value: str) -> bool:
    try:
        return 0 < float(value) <= 1
    except ValueError:
        return False


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@pytest.mark.integration
async def test_rabbitmq_a_quorum_queue_takes_a_delivery_limit() -> None:
    amqp = AmqpTransport(AMQP_URL)
    queue = queue_name()
    await amqp.declare(QueueSpec(queue, quorum=True, delivery_limit=2))
    await amqp.publish(queue, Message(b"poison"), timeout=5)
    stream = amqp.consume(queue, prefetch=1)
    for _ in range(3):  # the first delivery, then 2 redeliveries
        delivery = await take(stream)
        await delivery.reject(requeue=True)
    with pytest.raises(TimeoutError):  # past the limit the broker drops it
        await asyncio.wait_for(anext(stream), timeout=2)
    await stream.aclose()
    await amqp.close()


@pytest.mark.integration
async def test_rabbitmq_a_blocked_broker_fails_the_publish_by_its_deadline() -> None:
    amqp = AmqpTransport(AMQP_URL)
    queue = queue_name()
    await amqp.declare(QueueSpec(queue))
    before = subprocess.run(
        ["rabbitmqctl", "eval", "vm_memory_monitor:get_vm_memory_high_watermark()."],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    _rabbitmqctl("set_vm_memory_high_watermark", "0.0000001")
    try:
        with pytest.raises(PublishFailed, match=r"within 1\.5 s"):
            await amqp.publish(queue, Message(b"x" * 10_000), timeout=1.5)
    finally:  # back to what it was, not to a guess
        _rabbitmqctl("set_vm_memory_high_watermark", before if _is_fraction(before) else "0.4")
    await amqp.close()


async def test_a_queue_bound_to_an_exchange_is_reached_through_it_and_no_other_is(
    transport: Transport,
) -> None:
    gate, bound, other = f"test.{uuid.uuid4().hex[:8]}.gate", queue_name(), queue_name()
    await transport.declare(QueueSpec(bound, exchange=gate))
    await transport.declare(QueueSpec(other))
    await transport.publish(bound, Message(b"through the gate"), timeout=5, exchange=gate)
    assert (await next_delivery(transport, bound)).message.body == b"through the gate"
    with pytest.raises(Unroutable):  # the gate leads to its own queues only
        await transport.publish(other, Message(b"elsewhere"), timeout=5, exchange=gate)
    if isinstance(transport, AmqpTransport):
        CREATED.append(gate)


async def test_inspect_tells_depth_and_consumers_and_creates_nothing(
    transport: Transport,
) -> None:
    missing = queue_name()
    assert await transport.inspect(missing) is None
    assert await transport.inspect(missing) is None, "a look does not create the queue"
    queue = queue_name()
    await transport.declare(QueueSpec(queue))
    for n in range(3):
        await transport.publish(queue, Message(f"m{n}".encode()), timeout=10)
    info = await transport.inspect(queue)
    assert info is not None
    assert (info.name, info.messages, info.consumers) == (queue, 3, 0)
    stream = transport.consume(queue, prefetch=1)
    first = await take(stream)
    await first.ack()
    for _ in range(200):
        info = await transport.inspect(queue)
        if info is not None and info.consumers == 1:
            break
        await asyncio.sleep(0.05)
    assert info is not None
    assert info.consumers == 1
    assert info.messages <= 2  # one taken, one maybe prefetched
    await stream.aclose()
