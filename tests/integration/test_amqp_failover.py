"""A transport given several brokers (a cluster's nodes) uses whichever answers. The real
failover, a node killed under load, is the on-demand cluster run (tests/chaos/test_cluster.py)."""

from __future__ import annotations

import socket
import uuid

import aio_pika
import pytest

from adapters.transport_amqp import AmqpTransport, FailoverConnection
from exchange.errors import TransientFault
from exchange.transport import Message, QueueSpec
from tests.integration.broker import AMQP_URL, delete_queues

pytestmark = pytest.mark.integration


def _closed_port_url() -> str:
    with socket.socket() as s:  # a port nobody listens on (bound, then freed)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def test_the_hook_failover_relies_on_is_still_in_aio_pika() -> None:
    # FailoverConnection overrides aio-pika's private attempt; a rename would silently
    # bring back one-URL reconnects
    assert hasattr(aio_pika.RobustConnection, "_RobustConnection__connect_transport")
    assert "_RobustConnection__connect_transport" in FailoverConnection.__dict__


async def test_a_node_that_does_not_answer_is_passed_over_for_the_next() -> None:
    queue = f"test.failover.{uuid.uuid4().hex[:8]}"
    transport = AmqpTransport([_closed_port_url(), AMQP_URL], connect_timeout=5)
    try:
        await transport.connect()
        await transport.declare(QueueSpec(queue))
        await transport.publish(queue, Message(body=b"x", message_id="m1"), timeout=5)
        info = await transport.inspect(queue)
        assert info is not None
        assert info.messages == 1
    finally:
        await transport.close()
        await delete_queues([queue])


async def test_when_no_node_answers_the_caller_is_told_which_were_tried() -> None:
    dead = [_closed_port_url(), _closed_port_url()]
    transport = AmqpTransport(dead, connect_timeout=2)
    with pytest.raises(TransientFault) as caught:
        await transport.connect()
    assert all(url.split("@")[1] in caught.value.message for url in dead)
