"""Fair share at intake: each [credentials] login has its own intake queue behind its own
gate, and the node takes from every intake queue in turn (docs/amqp-face.md, "Fair
share"). A login that floods waits behind its own flood; another login's submission waits
for a slot, not behind the flood. Through one shared queue it would wait behind all of it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from adapters.transport_memory import MemoryDelivery, MemoryTransport
from exchange.admission import Admission
from exchange.config import Credential
from exchange.node import Answer, Node, NodeSettings
from exchange.signing import sign
from exchange.transport import Message
from tests.conftest import example
from tests.pki import G22, H53, DevPki
from tests.unit.test_node import ANSWERS, one_node

FLOOD = 2000


async def _taken_before_legit(node: Node, pki: DevPki, *, own_gates: bool) -> int:
    """How many flood submissions the node took from its queues before the legitimate
    one (each delivery is recorded as the node's intake takes it), once all are answered."""
    queues, memory = node.queues, node.transport
    assert isinstance(memory, MemoryTransport)
    taken: list[str] = []
    consume = memory.consume

    async def recording(queue: str, *, prefetch: int) -> AsyncGenerator[MemoryDelivery, None]:
        async for delivery in consume(queue, prefetch=prefetch):
            taken.append(delivery.message.correlation_id or "")
            yield delivery

    memory.consume = recording  # type: ignore[method-assign]

    def gate(login: str) -> str:
        return queues.login_gate(login) if own_gates else queues.gate

    for n in range(FLOOD):
        await memory.publish(
            queues.inbound,
            Message(
                f"<flood n='{n}'/>".encode(),
                reply_to=ANSWERS,
                correlation_id=f"flood-{n}",
                user_id="flooder",
            ),
            timeout=5,
            exchange=gate("flooder"),
        )
    legit = sign(example("document-new.edxml"), pki.key(G22))  # to H53 and a commune
    await memory.publish(
        queues.inbound,
        Message(legit, reply_to=ANSWERS, correlation_id="legit", user_id="qlvb"),
        timeout=5,
        exchange=gate("qlvb"),
    )
    intake = asyncio.create_task(node.consume_intake())
    answered: dict[str, Answer] = {}
    stream = consume(ANSWERS, prefetch=1000)
    try:
        async with asyncio.timeout(60):
            async for delivery in stream:
                await delivery.ack()
                answered[delivery.message.correlation_id or ""] = Answer.decode(
                    delivery.message.body
                )
                if len(answered) == FLOOD + 1:
                    break
    finally:
        await stream.aclose()
        intake.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await intake
    assert answered["legit"].outcome == "accepted"
    assert all(a.outcome == "refused" for k, a in answered.items() if k != "legit")
    return taken.index("legit")


def _settings(rate: float | None = None) -> NodeSettings:
    return NodeSettings(
        "province-h53",
        hosted=frozenset({G22, H53, "000.21.31.H53"}),
        credentials={
            "flooder": Credential(organs=frozenset({H53}), rate_per_s=rate),
            "qlvb": Credential(organs=frozenset({G22})),
        },
        intake_concurrency=4,
        prefetch=16,
    )


async def test_a_flood_waits_behind_itself_not_before_another_login(
    tmp_path: Path, admission: Admission, pki: DevPki
) -> None:
    async with one_node(tmp_path, admission, _settings()) as node:
        ahead = await _taken_before_legit(node, pki, own_gates=True)
    assert ahead < 40, f"the node took {ahead} flood submissions before the other login's"


async def test_through_one_shared_queue_the_same_flood_goes_first(
    tmp_path: Path, admission: Admission, pki: DevPki
) -> None:
    """The control: what the login queues are for."""
    async with one_node(tmp_path, admission, _settings()) as node:
        ahead = await _taken_before_legit(node, pki, own_gates=False)
    assert ahead > FLOOD - 20


FLOODED = 100


async def test_a_rated_logins_flood_is_taken_no_faster_than_twice_its_rate(
    tmp_path: Path, admission: Admission
) -> None:
    """Past its rate a login is answered ``intake.rate_limited``, but the node takes from its
    queue at most twice its rate (at least 20 a second, bursts of twice that): the rest of a
    flood waits in the login's own queue and costs the node nothing."""
    async with one_node(tmp_path, admission, _settings(rate=10.0)) as node:
        for n in range(FLOODED):
            await node.transport.publish(
                node.queues.inbound,
                Message(b"<flood/>", reply_to=ANSWERS, correlation_id=f"f{n}", user_id="flooder"),
                timeout=5,
                exchange=node.queues.login_gate("flooder"),
            )
        began = time.monotonic()
        intake = asyncio.create_task(node.consume_intake())
        codes = []
        stream = node.transport.consume(ANSWERS, prefetch=1000)
        try:
            async with asyncio.timeout(30):
                async for delivery in stream:
                    await delivery.ack()
                    codes.append(Answer.decode(delivery.message.body).code)
                    if len(codes) == FLOODED:
                        break
        finally:
            await stream.aclose()
            intake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await intake
        took = time.monotonic() - began
    # 20 a second after a burst of 40: 100 take at least three seconds
    assert took >= 2.9, f"the flood was taken in {took:.2f} s"
    # past the login's own burst (20) and rate (10 a second), each is refused
    assert codes.count("intake.rate_limited") >= FLOODED - 2 * 10 - 10 * took - 5
