"""One node as its own process, on the real RabbitMQ and the real stores; kill -9 at each
step of intake and relay, then restart: every package is in its mailbox exactly once."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from exchange.links import unframe
from exchange.transport import Message
from tests.integration.harness import AMQP_URL, COMMUNE, G22, H53, NodeProcess

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[NodeProcess]:
    process = NodeProcess(tmp_path, store_kind=request.param)
    yield process
    await process.cleanup()


def documents(node: NodeProcess, count: int) -> list[bytes]:
    """Distinct signed documents from G22 to H53 and the commune."""
    return [
        node.signed(
            "document-new.edxml",
            **{
                "125/UBND-VP": f"{900 + i}/UBND-VP",
                "<edXML:CodeNumber>125<": f"<edXML:CodeNumber>{900 + i}<",
            },
        )
        for i in range(count)
    ]


async def publish_raw(node: NodeProcess, packages: list[bytes]) -> None:
    """Submit without waiting for answers (a crashing node may never give them)."""
    async with node.client() as client:
        for data in packages:
            await client.transport.publish(client.queues.inbound, Message(data), timeout=10)


def assert_exactly_once(found: list[str], expected: int) -> None:
    assert len(found) == expected, f"expected {expected} packages, found {len(found)}"
    assert len(set(found)) == len(found), "a package is in the mailbox twice"


async def test_a_package_lands_once_byte_identical(node: NodeProcess) -> None:
    node.start()
    await node.ready()
    data = node.signed("document-new.edxml")
    async with node.client() as client:
        (answer,) = await client.submit([data], as_organ=G22)
        assert (answer.outcome, answer.level) == ("accepted", "strict")
        await node.wait_for_mailbox(H53, 1)
        (fetched,) = await client.fetch(H53)
        assert fetched.data == data
        assert fetched.message_id == answer.message_id
        assert await client.mark_fetched(H53, [fetched.message_id]) == 1
        assert await client.fetch(H53) == []
        (again,) = await client.submit([data], as_organ=G22)
        assert (again.outcome, again.message_id) == ("duplicate", answer.message_id)
        other = node.signed("document-new.edxml", **{"Nguyễn Văn An": "Nguyễn Văn Ba"})
        (conflict,) = await client.submit([other], as_organ=G22)
        assert (conflict.outcome, conflict.message_id) == ("conflict", answer.message_id)
        (refused,) = await client.submit([b"<edXML/>"], as_organ=G22)
        assert (refused.outcome, refused.code) == ("refused", "contract.invalid")
    assert_exactly_once(await node.mailbox(H53), 1)
    assert_exactly_once(await node.mailbox(COMMUNE), 1)


@pytest.mark.parametrize("step", ["after-commit", "before-ack", "mid-relay"])
async def test_kill_9_at_each_step_then_restart_loses_and_duplicates_nothing(
    node: NodeProcess, step: str
) -> None:
    packages = documents(node, 6)
    await node.declare_queues()
    await publish_raw(node, packages)
    crashing = node.start(crash_at=step)
    assert crashing.wait(timeout=60) == -9, "the node was killed at the failpoint"
    node.start()
    sent = sorted(hashlib.sha256(p).hexdigest() for p in packages)
    for organ in (H53, COMMUNE):
        await node.wait_for_mailbox(organ, len(packages))
        # every package sent, each once, byte for byte (by digest, not by message id)
        assert sorted(await node.mailbox_digests(organ)) == sent


async def test_kill_9_after_a_link_publish_republishes_the_same_message(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    node.config.write_text(
        node.config.read_text().replace(
            f'id = "{node.node_id}"', f'id = "{node.node_id}"\nparent = "{node.node_id}-up"'
        )
    )
    link = f"lienthong.link.{node.node_id}-up.up.normal"  # the parent's upward lane
    connection = await aio_pika.connect(AMQP_URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(link, durable=True)
        gate = await channel.declare_exchange(  # the parent's side: its link gate
            f"lienthong.link.{node.node_id}-up.gate", aio_pika.ExchangeType.DIRECT, durable=True
        )
        await queue.bind(gate, routing_key=link)
        data = node.signed("document-new.edxml", **{"000.21.31.H53": "000.00.00.H41"})
        await node.declare_queues()
        await publish_raw(node, [data])
        crashing = node.start(crash_at="after-publish")
        assert crashing.wait(timeout=60) == -9
        node.start()
        copies = []
        async with asyncio.timeout(60):
            while len(copies) < 2:
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.2)
                    continue
                copies.append(message)
                await message.ack()
        assert {m.message_id for m in copies} == {copies[0].message_id}, "the same message id"
        assert all(unframe(m.body)[1] == data for m in copies)  # the package, byte for byte
        # the local copy is delivered by the relay too, possibly after the upward publish
        assert_exactly_once(await node.wait_for_mailbox(H53, 1), 1)
        await channel.queue_delete(link)
        await channel.exchange_delete(gate.name)
    finally:
        await connection.close()
        await node.cleanup()


async def test_a_poison_package_is_dead_lettered_and_the_node_keeps_serving(
    node: NodeProcess,
) -> None:
    poison, healthy = documents(node, 2)
    digest = hashlib.sha256(poison).hexdigest()
    await node.declare_queues()
    await publish_raw(node, [poison, healthy])
    for _ in range(node.max_attempts):  # it kills the node every time it is admitted
        assert node.start(crash_at=f"admit:{digest}").wait(timeout=60) == -9
    node.start(crash_at=f"admit:{digest}")  # the next attempt is past the limit
    found = await node.wait_for_mailbox(H53, 1)
    assert_exactly_once(found, 1)
    listing = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "ops", "dlq", "list", "--config", str(node.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"sha256 {digest[:16]}" in listing.stdout
    assert f"{node.max_attempts} attempt(s)" in listing.stdout
    assert "1 dead letter(s)" in listing.stdout
    # the operator fixes the cause (here: the failpoint goes) and replays it
    node.stop()
    node.start()
    await node.ready()
    dead_id = listing.stdout.split(":", 1)[0]
    replayed = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapters.cli",
            "ops",
            "dlq",
            "replay",
            "--config",
            str(node.config),
            dead_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{dead_id}: sent to lienthong.{node.node_id}.inbound again" in replayed.stdout
    assert_exactly_once(await node.wait_for_mailbox(H53, 2), 2)


async def test_two_instances_on_one_queue_and_one_database_deliver_once(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, store_kind="postgres")
    try:
        packages = documents(node, 20)
        node.start()
        node.start()
        await node.ready(consumers=2)
        await publish_raw(node, packages)
        assert_exactly_once(await node.wait_for_mailbox(H53, 20), 20)
        assert_exactly_once(await node.wait_for_mailbox(COMMUNE, 20), 20)
        await publish_raw(node, packages)  # everything again, to both instances
        async with node.client() as client:
            answers = await client.submit(packages[:3], as_organ=G22)
        assert {a.outcome for a in answers} == {"duplicate"}
        assert_exactly_once(await node.mailbox(H53), 20)
    finally:
        await node.cleanup()


def _restart(*command: str) -> None:
    subprocess.run(list(command), check=True, capture_output=True, timeout=120)


async def test_a_rabbitmq_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    try:
        first, second = documents(node, 10)[:5], documents(node, 10)[5:]
        process = node.start()
        await node.ready()
        await publish_raw(node, first)
        _restart("rabbitmqctl", "stop_app")
        _restart("rabbitmqctl", "start_app")
        _restart("rabbitmqctl", "await_startup")
        await publish_raw(node, second)
        assert_exactly_once(await node.wait_for_mailbox(H53, 10, timeout=90), 10)
        assert process.poll() is None, "the node rode out the broker restart"
    finally:
        await node.cleanup()


async def test_a_postgresql_restart_mid_stream_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path, store_kind="postgres")
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
    try:
        packages = documents(node, 10)
        process = node.start()
        await node.ready()
        await publish_raw(node, packages[:5])
        _restart("pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart")
        await publish_raw(node, packages[5:])
        assert_exactly_once(await node.wait_for_mailbox(H53, 10, timeout=90), 10)
        assert process.poll() is None, "the node rode out the database restart"
    finally:
        await node.cleanup()


def _lienthong(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_send_and_fetch_from_the_command_line_on_quorum_queues(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path)
    node.config.write_text(
        node.config.read_text().replace(
            "publish_timeout_s = 10\n", "publish_timeout_s = 10\nquorum = true\n"
        )
    )
    try:
        node.start()
        await node.ready()
        package = tmp_path / "outgoing.edxml"
        package.write_bytes(node.signed("document-new.edxml"))
        sent = _lienthong("send", "--config", str(node.config), "--as", G22, str(package))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert ": accepted: message " in sent.stdout
        assert "(strict)" in sent.stdout
        again = _lienthong("send", "--config", str(node.config), "--as", G22, str(package))
        assert ": duplicate: message " in again.stdout
        await node.wait_for_mailbox(H53, 1)
        inbox = tmp_path / "inbox"
        fetched = _lienthong("fetch", "--config", str(node.config), "--as", H53, "-o", str(inbox))
        assert fetched.returncode == 0, fetched.stderr
        assert "1 package(s) fetched for 000.00.00.H53" in fetched.stdout
        (received,) = inbox.glob("*.edxml")
        assert received.read_bytes() == package.read_bytes()
        empty = _lienthong("fetch", "--config", str(node.config), "--as", H53, "-o", str(inbox))
        assert "0 package(s) fetched" in empty.stdout
        wrong = _lienthong("send", "--config", str(node.config), "--as", H53, str(package))
        assert wrong.returncode == 1
        assert "refused [submitter.not_sender]" in wrong.stdout
        listed = subprocess.run(
            ["rabbitmqctl", "list_queues", "name", "type", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert f"lienthong.{node.node_id}.inbound\tquorum" in listed.stdout
    finally:
        await node.cleanup()
