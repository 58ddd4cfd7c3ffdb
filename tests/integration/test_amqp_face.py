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
from adapters.provision import _login as provision_login
from exchange.errors import TransientFault
from tests.integration.test_tree_process import (
    COMMUNE_AGENCY,
    DISTRICT_AGENCY,
    HOMES,
    OTHER_COMMUNE,
    PARENTS,
    PROVINCE,
)
from tests.integration.tree import TreeProcesses

pytestmark = pytest.mark.integration


def lienthong(*args: str) -> str:
    """Run the lienthong command as an operator would; its output, once it succeeded."""
    ran = subprocess.run(
        [sys.executable, "-m", "adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def forget(login: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "delete_user", login], capture_output=True, timeout=60, check=False
    )


async def test_a_provisioned_login_sends_as_its_agency_and_reaches_nothing_else(
    tmp_path: Path,
) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    login = f"qlvb-{uuid.uuid4().hex[:6]}"
    config = tree.config("commune")
    try:
        made = lienthong(
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
        )
        assert f"[credentials.{login}]" in made
        # the operator adds what it printed to the node file
        snippet = made[made.index(f"[credentials.{login}]") :]
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
            gate = await channel.get_exchange(f"lienthong.{node}.gate.{login}", ensure=False)
            with pytest.raises(
                aio_pika.exceptions.AMQPError, match=r"PRECONDITION_FAILED|user_id"
            ) as spoofed:
                await gate.publish(
                    aio_pika.Message(b"<x/>", user_id="guest"),
                    routing_key=f"lienthong.{node}.inbound",
                    timeout=10,
                )
            assert "user_id" in str(spoofed.value)  # the broker's own words
            # not the node's shared gate: it writes to its own, whose queue it alone fills
            channel = await connection.channel(publisher_confirms=True)
            shared = await channel.get_exchange(f"lienthong.{node}.gate", ensure=False)
            with pytest.raises(aio_pika.exceptions.AMQPError, match="ACCESS_REFUSED"):
                await shared.publish(
                    aio_pika.Message(b"<x/>", user_id=login),
                    routing_key=f"lienthong.{node}.inbound",
                    timeout=10,
                )
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
        forget(login)
        await tree.cleanup()


async def test_a_push_agency_takes_its_mail_from_its_own_queue_and_its_ack_marks_it_fetched(
    tmp_path: Path,
) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    login = f"qlvb-{uuid.uuid4().hex[:6]}"
    config = tree.config("commune")
    try:
        made = lienthong(
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
        )
        snippet = made[made.index(f"[credentials.{login}]") :]
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
        forget(login)
        await tree.cleanup()


# The AMQP face's authorisation matrix at a commune node (real broker, real node): each kind
# of login against each queue operation. "another" is a login for another agency; "hosted"
# a system serving the commune and a neighbour (push for the commune); "operator" the
# broker's administrator login, which the node does not know as an agency's.
OPERATIONS = ["submit", "fetch", "default exchange", "read intake", "read push queue"]
AMQP_MATRIX = {
    "none": ["login refused"] * 5,
    "wrong": ["login refused"] * 5,
    "another": ["submitter.not_sender", "agency.not_yours"] + ["ACCESS_REFUSED"] * 3,
    "hosted": ["accepted", "ok", "ACCESS_REFUSED", "ACCESS_REFUSED", "ok"],
    "operator": ["submitter.not_sender", "agency.not_yours", "ok", "ok", "ok"],
    "node link": ["ACCESS_REFUSED"] * 5,  # a child's link login: its link, nothing else
}


async def test_the_amqp_authorisation_matrix(tmp_path: Path) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    config = tree.config("commune")
    suffix = uuid.uuid4().hex[:6]
    logins = {"another": f"other-{suffix}", "hosted": f"hosted-{suffix}"}
    organs = {"another": [PROVINCE], "hosted": [COMMUNE_AGENCY, OTHER_COMMUNE]}
    passwords = {}
    try:
        for kind, login in logins.items():
            args = ["--organ", organs[kind][0]] + (
                ["--organ", organs[kind][1], "--push"] if kind == "hosted" else []
            )
            made = lienthong(
                "agencies",
                "provision",
                "--config",
                str(config),
                "--login",
                login,
                *args,
                "--password-file",
                str(tmp_path / login),
            )
            snippet = made[made.index(f"[credentials.{login}]") :]
            if kind != "hosted":
                snippet = snippet.split("\n\n[delivery]")[0]
            config.write_text(config.read_text() + "\n" + snippet + "\n")
            passwords[kind] = (tmp_path / login).read_text().strip()
        link = f"link-{suffix}"
        made = lienthong(
            "links",
            "provision",
            "--config",
            str(tree.config("district")),
            "--child",
            tree.ids["commune"],
            "--login",
            link,
            "--password-file",
            str(tmp_path / link),
        )
        logins["node link"] = link
        passwords["node link"] = (tmp_path / link).read_text().strip()
        tree.start("commune")
        await tree.ready_inbound("commune")
        node = tree.ids["commune"]
        urls = {
            "none": f"amqp://nobody-{suffix}:x@127.0.0.1:5672/",
            "wrong": f"amqp://{logins['hosted']}:not-the-password@127.0.0.1:5672/",
            "another": f"amqp://{logins['another']}:{passwords['another']}@127.0.0.1:5672/",
            "hosted": f"amqp://{logins['hosted']}:{passwords['hosted']}@127.0.0.1:5672/",
            "operator": "amqp://guest:guest@127.0.0.1:5672/",
            "node link": f"amqp://{link}:{passwords['node link']}@127.0.0.1:5672/",
        }
        seen = {kind: await row(url, node, tree, n) for n, (kind, url) in enumerate(urls.items())}
        assert seen == AMQP_MATRIX
    finally:
        for login in logins.values():
            forget(login)
        await tree.cleanup()


async def row(url: str, node: str, tree: TreeProcesses, n: int) -> list[str]:
    try:
        connection = await aio_pika.connect(url, timeout=10)
    except (aio_pika.exceptions.AMQPError, ConnectionError, OSError):
        return ["login refused"] * 5
    await connection.close()
    out: list[str] = []
    try:
        async with NodeClient(url, node, timeout_s=30) as client:
            (answer,) = await client.submit(
                [tree.signed(COMMUNE_AGENCY, [COMMUNE_AGENCY], 50 + n)], as_organ=COMMUNE_AGENCY
            )
            out.append(answer.outcome if answer.outcome == "accepted" else str(answer.code))
            try:
                await client.fetch(COMMUNE_AGENCY, limit=1)
                out.append("ok")
            except TransientFault as refusal:
                out.append(refusal.message.partition(":")[0])
    except (TransientFault, aio_pika.exceptions.AMQPError) as refused:  # not even a reply queue
        said = "ACCESS_REFUSED" if "ACCESS_REFUSED" in str(refused) else str(refused)[:80]
        out = [said, said]
    for attempt in ("default exchange", "read intake", "read push queue"):
        out.append(await broker_says(url, node, attempt))
    return out


async def broker_says(url: str, node: str, attempt: str) -> str:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        try:
            if attempt == "default exchange":
                await channel.default_exchange.publish(
                    aio_pika.Message(b"<x/>"), routing_key=f"lienthong.{node}.dead", timeout=10
                )
            else:
                name = (
                    f"lienthong.{node}.inbound"
                    if attempt == "read intake"
                    else f"lienthong.{node}.mailbox.{COMMUNE_AGENCY}"
                )
                queue = await channel.declare_queue(name, passive=True)
                await queue.get(timeout=5, fail=False, no_ack=False)
        except aio_pika.exceptions.AMQPError as refused:
            return "ACCESS_REFUSED" if "ACCESS_REFUSED" in str(refused) else str(refused)[:80]
        return "ok"


async def test_a_child_links_to_its_parent_with_a_login_that_reaches_its_link_only(
    tmp_path: Path,
) -> None:
    tree = TreeProcesses(tmp_path, PARENTS, HOMES)
    login = f"link-{uuid.uuid4().hex[:6]}"
    try:
        lienthong(
            "links",
            "provision",
            "--config",
            str(tree.config("district")),
            "--child",
            tree.ids["commune"],
            "--login",
            login,
            "--password-file",
            str(tmp_path / "link"),
        )
        password = (tmp_path / "link").read_text().strip()
        child = tree.config("commune")
        child.write_text(
            child.read_text()
            + f'\n[link]\nparent_url = "amqp://{login}:{password}@127.0.0.1:5672/"\n'
        )
        tree.start("district")
        tree.start("commune")
        await tree.ready("district")
        await tree.ready("commune")  # its link is up: it consumes its down lane as the login
        async with tree.client("commune") as client:
            (sent,) = await client.submit(
                [tree.signed(COMMUNE_AGENCY, [DISTRICT_AGENCY], 60)], as_organ=COMMUNE_AGENCY
            )
        assert sent.outcome == "accepted", sent
        assert await tree.wait_for_mailbox(DISTRICT_AGENCY, 1) == [sent.message_id]
        async with tree.client("district") as client:  # and back down the same link
            (down,) = await client.submit(
                [tree.signed(DISTRICT_AGENCY, [COMMUNE_AGENCY], 61)], as_organ=DISTRICT_AGENCY
            )
        assert down.outcome == "accepted", down
        assert await tree.wait_for_mailbox(COMMUNE_AGENCY, 1) == [down.message_id]
    finally:
        forget(login)
        await tree.cleanup()


def test_a_password_that_looks_like_an_option_is_set_as_it_is() -> None:
    """Passwords go to rabbitmqctl on its standard input: one starting with '-' (a random
    token may) is not read as an option, and none shows in the process list."""
    login = f"probe-{uuid.uuid4().hex[:6]}"
    try:
        assert provision_login(login, "-M0f7j97EI4N6iogp9cJadZEiiiqBrGO") is True
        checked = subprocess.run(
            ["rabbitmqctl", "authenticate_user", login, "--", "-M0f7j97EI4N6iogp9cJadZEiiiqBrGO"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert provision_login(login, "-another-password-0123") is False  # changed, not added
    finally:
        forget(login)
