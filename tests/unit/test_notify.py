"""The alert notifier on loopback: a real aiohttp webhook receiver and a real SMTP server
(aiosmtpd) receive "firing" once when a link has been down for five minutes and "resolved"
once when it is back; a webhook that is down at first gets the transition later."""

from __future__ import annotations

import asyncio
import email
import queue
import socket
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from adapters.notify import Notifier, notifier_for
from exchange.config import node_config_from_mapping
from exchange.config_alerts import AlertSettings
from exchange.errors import TransientFault
from tests.unit.test_config import GOOD

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
TOKEN = "hook-token-5e3f9a"
DEADLINE_S = 5.0  # a test that waits longer than this for a message has failed


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Receiver:
    """A webhook on loopback: what it was sent, and what it answers."""

    port: int
    received: asyncio.Queue[tuple[dict[str, Any], str | None]] = field(
        default_factory=asyncio.Queue
    )
    answers: list[int] = field(default_factory=list)  # statuses to give first, then 200
    hold: asyncio.Event | None = None  # when set: calls wait for it (a hung webhook)
    redirect_to: str | None = None  # answer every call with a redirect there
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/lienthong"

    async def start(self) -> None:
        async def hook(request: web.Request) -> web.Response:
            if self.hold is not None:
                await self.hold.wait()
            if self.redirect_to is not None:
                return web.Response(status=307, headers={"Location": self.redirect_to})
            status = self.answers.pop(0) if self.answers else 200
            if status == 200:
                auth = request.headers.get("Authorization")
                self.received.put_nowait((await request.json(), auth))
            return web.Response(status=status)

        app = web.Application()
        app.router.add_post("/hooks/lienthong", hook)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        if self.runner is not None:
            await self.runner.cleanup()

    async def next(self) -> tuple[dict[str, Any], str | None]:
        async with asyncio.timeout(DEADLINE_S):
            return await self.received.get()


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    receiver = Receiver(free_port())
    await receiver.start()
    yield receiver
    await receiver.stop()


class Mailbox:
    """aiosmtpd's handler: each message as it arrives (the server runs in its own thread)."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[list[str], EmailMessage]] = queue.Queue()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.put((list(envelope.rcpt_tos), message))
        return "250 OK"

    async def next(self) -> tuple[list[str], EmailMessage]:
        return await asyncio.to_thread(self.messages.get, timeout=DEADLINE_S)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield mailbox, controller.port
    controller.stop()


class Node:
    """A node as the notifier sees it: a /status snapshot we set, and a clock we move."""

    def __init__(self) -> None:
        self.now = T0
        self.link_state = "up"
        self.link_since = T0
        self.fail_with: Exception | None = None

    def clock(self) -> datetime:
        return self.now

    async def snapshot(self) -> Mapping[str, Any]:
        if self.fail_with is not None:
            raise self.fail_with
        return {
            "node": {"id": "province-h53", "level": "province"},
            "links": [
                {
                    "neighbour": "central",
                    "role": "parent",
                    "state": self.link_state,
                    "since": self.link_since.isoformat(),
                    "last_error": None,
                    "backlog_total": 0,
                }
            ],
            "upstreams": [],
            "dead_letters": {"count": 0, "items": []},
            "overdue": {"count": 0, "items": []},
            "certificates": [],
            "directory": {"version": 3, "issued_at": None, "age_s": 60.0},
            "clock": {"offset_s": 0.2, "ok": True, "basis": "central"},
        }

    def at(self, minutes: float, link: str | None = None) -> None:
        self.now = T0 + timedelta(minutes=minutes)
        if link is not None and link != self.link_state:
            self.link_state, self.link_since = link, self.now


def notifier(node: Node, **settings: Any) -> Notifier:
    base = AlertSettings(deadline_s=2.0, attempts=2, backoff_s=0.0)
    return Notifier(replace(base, **settings), "province-h53", node.snapshot, clock=node.clock)


async def test_webhook_and_email_get_firing_then_resolved_once_each(
    webhook: Receiver, smtp: tuple[Mailbox, int]
) -> None:
    mailbox, smtp_port = smtp
    node = Node()
    n = notifier(
        node,
        webhook_url=webhook.url,
        webhook_token=TOKEN,
        email_to=("truc-ban@tayninh.gov.vn",),
        email_from="lienthong@tayninh.gov.vn",
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_starttls=False,
    )
    node.at(0, link="down")
    assert await n.check_once() == []
    node.at(4)
    assert await n.check_once() == []  # down for 4 minutes: not yet

    node.at(5)
    [firing] = await n.check_once()
    assert (firing.state, firing.alert.name) == ("firing", "LienthongLinkDown")
    payload, auth = await webhook.next()
    assert auth == f"Bearer {TOKEN}"
    assert {k: payload[k] for k in ("node", "status", "alert", "severity", "subject")} == {
        "node": "province-h53",
        "status": "firing",
        "alert": "LienthongLinkDown",
        "severity": "critical",
        "subject": "central",
    }
    assert payload["since"] == "2026-11-29T01:00:00+00:00"
    assert payload["summary_vi"].startswith("mất liên kết tới central")
    assert "lienthong ops links" in payload["runbook"]
    to, mail = await mailbox.next()
    assert to == ["truc-ban@tayninh.gov.vn"]
    assert mail["Subject"] == (
        "[lienthong province-h53] CẢNH BÁO / FIRING: LienthongLinkDown central"
    )
    body = mail.get_content()
    assert "Nội dung: mất liên kết tới central (nút cha) từ 2026-11-29T01:00+00:00" in body
    assert "What: link to central (parent) down since 2026-11-29T01:00+00:00" in body

    node.at(6)
    assert await n.check_once() == []  # still down: nothing sent again
    assert webhook.received.empty()
    assert mailbox.messages.empty()

    node.at(7, link="up")
    [resolved] = await n.check_once()
    assert (resolved.state, resolved.alert.name) == ("resolved", "LienthongLinkDown")
    payload, _ = await webhook.next()
    assert (payload["status"], payload["alert"], payload["at"]) == (
        "resolved",
        "LienthongLinkDown",
        "2026-11-29T01:07:00+00:00",
    )
    _, mail = await mailbox.next()
    assert mail["Subject"] == (
        "[lienthong province-h53] ĐÃ HẾT / RESOLVED: LienthongLinkDown central"
    )
    assert "Status: resolved at 2026-11-29T01:07:00+00:00" in mail.get_content()
    node.at(8)
    assert await n.check_once() == []
    assert webhook.received.empty()
    assert mailbox.messages.empty()


async def test_a_webhook_down_at_first_gets_the_transitions_later() -> None:
    node = Node()
    receiver = Receiver(free_port())  # nothing listens there yet
    n = notifier(node, webhook_url=receiver.url)
    node.at(0, link="down")
    await n.check_once()
    node.at(5)
    with structlog.testing.capture_logs() as logs:
        [_] = await n.check_once()
    assert n.pending("webhook") == 1
    failures = [e for e in logs if e["event"] == "alerts.send_failed"]
    assert [e["attempt"] for e in failures] == [1, 2]
    assert receiver.url not in repr(logs)

    await receiver.start()
    try:
        node.at(6)
        assert await n.check_once() == []  # no new transition, but the pending one goes
        payload, _ = await receiver.next()
        assert (payload["status"], payload["alert"]) == ("firing", "LienthongLinkDown")
        assert n.pending("webhook") == 0

        await receiver.stop()  # down again: the resolution waits, in order, behind nothing
        receiver = Receiver(receiver.port, answers=[503, 503])
        await receiver.start()
        node.at(7, link="up")
        await n.check_once()  # two tries, two 503s
        assert n.pending("webhook") == 1
        assert receiver.received.empty()
        node.at(8)
        await n.check_once()
        payload, _ = await receiver.next()
        assert (payload["status"], payload["alert"]) == ("resolved", "LienthongLinkDown")
    finally:
        await receiver.stop()


async def test_every_webhook_call_has_a_deadline() -> None:
    node = Node()
    receiver = Receiver(free_port(), hold=asyncio.Event())
    await receiver.start()
    try:
        n = notifier(node, webhook_url=receiver.url, deadline_s=0.2, attempts=1)
        node.at(-10, link="down")
        node.at(0)
        async with asyncio.timeout(DEADLINE_S):
            [_] = await n.check_once()
        assert n.pending("webhook") == 1
    finally:
        await receiver.stop()


async def test_a_redirect_is_not_followed_with_the_token(webhook: Receiver) -> None:
    node = Node()
    moved = Receiver(free_port(), redirect_to=webhook.url)
    await moved.start()
    try:
        n = notifier(node, webhook_url=moved.url, webhook_token=TOKEN, attempts=1)
        node.at(-10, link="down")
        node.at(0)
        await n.check_once()
        assert n.pending("webhook") == 1
        assert webhook.received.empty()
    finally:
        await moved.stop()


async def test_a_snapshot_that_fails_is_logged_and_pending_ones_still_go(
    webhook: Receiver,
) -> None:
    node = Node()
    n = notifier(node, webhook_url=webhook.url)
    node.at(-10, link="down")
    node.at(0)
    await n.check_once()
    await webhook.next()
    node.fail_with = TransientFault("the store is down")
    with structlog.testing.capture_logs() as logs:
        assert await n.check_once() == []
    assert [e["error"] for e in logs if e["event"] == "alerts.snapshot_failed"] == [
        "transient.fault: the store is down"
    ]
    assert [a.name for a in n.active] == ["LienthongLinkDown"]  # not resolved by a failure


async def test_past_the_limit_the_oldest_pending_are_dropped_and_logged() -> None:
    """A link that flaps while the webhook is down: 6 transitions, room for 4."""
    node = Node()
    receiver = Receiver(free_port())
    n = Notifier(
        AlertSettings(webhook_url=receiver.url, attempts=1, backoff_s=0.0),
        "province-h53",
        node.snapshot,
        clock=node.clock,
        max_pending=4,
    )
    with structlog.testing.capture_logs() as logs:
        for minute in range(6):
            node.at(minute, link="up" if minute % 2 else "down")
            node.link_since = node.now - timedelta(minutes=10)  # down long enough at once
            assert len(await n.check_once()) == 1
    dropped = [(e["state"], e["alert"]) for e in logs if e["event"] == "alerts.dropped"]
    assert dropped == [("firing", "LienthongLinkDown"), ("resolved", "LienthongLinkDown")]
    await receiver.start()
    try:
        node.at(6)
        await n.check_once()
        got = [(await receiver.next())[0] for _ in range(4)]
        assert [(p["status"], p["at"][11:16]) for p in got] == [
            ("firing", "01:02"),
            ("resolved", "01:03"),
            ("firing", "01:04"),
            ("resolved", "01:05"),
        ]
    finally:
        await receiver.stop()


async def test_email_logs_in_when_told_to() -> None:
    mailbox = Mailbox()
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"mat-khau-9")

    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,  # loopback only; the node file requires STARTTLS elsewhere
    )
    controller.start()
    try:
        node = Node()
        settings = {
            "email_to": ("ops@tayninh.gov.vn",),
            "email_from": "lienthong@tayninh.gov.vn",
            "smtp_host": "127.0.0.1",
            "smtp_port": controller.port,
            "smtp_starttls": False,
            "smtp_user": "lienthong",
        }
        # after a refusal smtplib tries LOGIN, which this server leaves unanswered: the
        # deadline ends it
        wrong = notifier(node, smtp_password="sai", deadline_s=0.5, attempts=1, **settings)
        right = notifier(node, smtp_password="mat-khau-9", **settings)
        node.at(-10, link="down")
        node.at(0)
        with structlog.testing.capture_logs() as logs:
            await wrong.check_once()
            await right.check_once()
        assert wrong.pending("email") == 1
        assert right.pending("email") == 0
        _, mail = await mailbox.next()
        assert "LienthongLinkDown" in mail["Subject"]
        assert logins[-1] == (b"lienthong", b"mat-khau-9")
        assert "mat-khau" not in repr(logs)
        assert "sai" not in repr([e.get("error") for e in logs])
    finally:
        controller.stop()


def test_notifier_for_follows_the_node_file(tmp_path: Path) -> None:
    async def snapshot() -> Mapping[str, Any]:
        return {}

    plain = node_config_from_mapping(tomllib.loads(GOOD), "node.toml", tmp_path)
    assert notifier_for(plain, "province-h53", snapshot) is None
    with_alerts = node_config_from_mapping(
        tomllib.loads(GOOD + '[alerts]\nwebhook_url = "http://127.0.0.1:1/h"\ncheck_every_s = 5'),
        "node.toml",
        tmp_path,
    )
    n = notifier_for(with_alerts, "province-h53", snapshot)
    assert n is not None
    assert (n.node_id, n.settings.check_every_s) == ("province-h53", 5.0)
