"""The AMQP face on the real RabbitMQ: a provisioned agency login reaches the node's gate
and its own reply queues, nothing else; the broker refuses a spoofed user_id; the node
refuses a package whose From is outside the login's agencies."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import pytest

from adapters.client import NodeClient
from tests.integration.test_tree_process import COMMUNE_AGENCY, HOMES, PARENTS, PROVINCE
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration


async def test_a_provisioned_login_sends_as_its_agency_and_reaches_nothing_else(
    tmp_path: Path,
) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    login = f"qlvb-{uuid.uuid4().hex[:6]}"
    config = tree.config("commune")
    try:
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "agencies",
                "provision",
                "--config",
                str(config),
                "--login",
                login,
                "--organ",
                COMMUNE_AGENCY,
                "--password-file",
                str(tmp_path / "password"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        assert f"[credentials.{login}]" in made.stdout
        # the operator adds what it printed to the node file
        snippet = made.stdout[made.stdout.index(f"[credentials.{login}]") :]
        config.write_text(config.read_text() + "\n" + snippet + "\n")
        tree.start("commune")
        await tree.ready_inbound("commune")
        node = tree.ids["commune"]
        password = (tmp_path / "password").read_text().strip()
        url = f"amqp://{login}:{password}@127.0.0.1:5672/"

        async with NodeClient(url, node, timeout_s=30) as client:
            (own,) = await client.submit(
                [tree.signed(COMMUNE_AGENCY, [PROVINCE], 1)], as_organ=COMMUNE_AGENCY
            )
            assert own.outcome == "accepted", own
            (other,) = await client.submit(
                [tree.signed(PROVINCE, [COMMUNE_AGENCY], 2)], as_organ=PROVINCE
            )
            assert (other.outcome, other.code) == ("refused", "submitter.not_sender")

        connection = await aio_pika.connect(url)
        async with connection:
            # the broker checks user_id against the login: a spoofed one closes the channel
            channel = await connection.channel(publisher_confirms=True)
            gate = await channel.get_exchange(f"lienthong.{node}.gate", ensure=False)
            with pytest.raises(
                aio_pika.exceptions.AMQPError, match=r"PRECONDITION_FAILED|user_id"
            ) as spoofed:
                await gate.publish(
                    aio_pika.Message(b"<x/>", user_id="guest"),
                    routing_key=f"lienthong.{node}.inbound",
                    timeout=10,
                )
            assert "user_id" in str(spoofed.value)  # the broker's own words
            # not the default exchange: it would reach any queue
            channel = await connection.channel(publisher_confirms=True)
            with pytest.raises(aio_pika.exceptions.AMQPError, match="ACCESS_REFUSED"):
                await channel.default_exchange.publish(
                    aio_pika.Message(b"<x/>", user_id=login),
                    routing_key=f"lienthong.{node}.inbound",
                    timeout=10,
                )
            # and no queue but its own replies to read
            channel = await connection.channel()

            async def read_intake() -> object:
                queue = await channel.declare_queue(f"lienthong.{node}.inbound", passive=True)
                return await queue.get(timeout=5)

            with pytest.raises(aio_pika.exceptions.AMQPError, match="ACCESS_REFUSED"):
                await read_intake()
    finally:
        subprocess.run(
            ["rabbitmqctl", "delete_user", login], capture_output=True, timeout=60, check=False
        )
        await tree.cleanup()


async def test_a_push_agency_takes_its_mail_from_its_own_queue_and_its_ack_marks_it_fetched(
    tmp_path: Path,
) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    login = f"qlvb-{uuid.uuid4().hex[:6]}"
    config = tree.config("commune")
    try:
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "adapters.cli",
                "agencies",
                "provision",
                "--config",
                str(config),
                "--login",
                login,
                "--organ",
                COMMUNE_AGENCY,
                "--push",
                "--password-file",
                str(tmp_path / "password"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert made.returncode == 0, made.stdout + made.stderr
        snippet = made.stdout[made.stdout.index(f"[credentials.{login}]") :]
        assert "[delivery]" in snippet
        config.write_text(config.read_text() + "\n" + snippet + "\n")
        tree.start("commune")
        await tree.ready_inbound("commune")
        node = tree.ids["commune"]
        password = (tmp_path / "password").read_text().strip()
        url = f"amqp://{login}:{password}@127.0.0.1:5672/"
        async with NodeClient(url, node, timeout_s=30) as client:
            (sent,) = await client.submit(  # to itself: the commune keeps a copy
                [tree.signed(COMMUNE_AGENCY, [COMMUNE_AGENCY], 3)], as_organ=COMMUNE_AGENCY
            )
            assert sent.outcome == "accepted", sent
            stream = client.receive(COMMUNE_AGENCY)
            item, ack = await asyncio.wait_for(anext(stream), timeout=60)
            assert item.message_id == sent.message_id
            assert item.sender == COMMUNE_AGENCY
            assert [
                e.message_id
                for e in await tree.mailbox_entries(COMMUNE_AGENCY)
                if e.fetched_at is None
            ] == [sent.message_id]
            await ack()
            await stream.aclose()
        entries = await tree.mailbox_entries(COMMUNE_AGENCY)
        assert [(e.message_id, e.fetched_at is not None) for e in entries] == [
            (sent.message_id, True)
        ]
    finally:
        subprocess.run(
            ["rabbitmqctl", "delete_user", login], capture_output=True, timeout=60, check=False
        )
        await tree.cleanup()
