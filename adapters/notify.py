"""The alert notifier: a node without Prometheus looks at its own /status every
``check_every_s``, judges it (exchange/alerting.py) and tells a person when an alert starts
and when it ends, once each, by webhook (JSON POST) and/or e-mail (SMTP), as the node file's
[alerts] table says (exchange/config_alerts.py).

Every call has a deadline and a few tries with a doubling backoff; a transition that could
not be sent stays pending, in order, and goes at the next check. Each channel keeps at most
``MAX_PENDING`` of them: past that, the oldest is dropped and the drop logged. The webhook's
address and token and the SMTP password are never logged.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol

import aiohttp
import structlog

from exchange.alert_messages import (
    FIRING,
    RESOLVED,
    Transition,
    email_body,
    email_subject,
    webhook_payload,
)
from exchange.alerting import Alert, AlertMemory, evaluate
from exchange.config import NodeConfig
from exchange.config_alerts import AlertSettings
from exchange.errors import AlertNotSent, LienthongError

log = structlog.get_logger("lienthong.alerts")

MAX_PENDING = 1000  # transitions waiting per channel while it is unreachable

Snapshot = Callable[[], Awaitable[Mapping[str, Any]]]


class _Channel(Protocol):
    name: str

    async def send(self, transition: Transition) -> None: ...


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, token: str | None, deadline_s: float) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=deadline_s)

    async def send(self, transition: Transition) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout) as session,
                session.post(  # not redirected: the token goes to this address only
                    self._url,
                    json=webhook_payload(transition),
                    headers=self._headers,
                    allow_redirects=False,
                ) as response,
            ):
                if response.status >= 300:  # its body is not read: it may be anything
                    raise AlertNotSent(f"the webhook answered {response.status}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # not str(exc): an InvalidURL or a redirect error would carry the address
            raise AlertNotSent(f"the webhook did not answer: {type(exc).__name__}") from exc


class EmailChannel:
    name = "email"

    def __init__(self, settings: AlertSettings) -> None:
        if settings.smtp_host is None or settings.email_from is None:
            raise ValueError("e-mail alerts need smtp_host and email_from")
        self._s = settings
        self._host = settings.smtp_host
        self._from = settings.email_from

    async def send(self, transition: Transition) -> None:
        message = self._message(transition)
        try:
            await asyncio.to_thread(self._send, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise AlertNotSent(
                f"the SMTP server {self._host} did not take it: {type(exc).__name__}"
            ) from exc

    def _message(self, transition: Transition) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = email_subject(transition)
        message["From"] = self._from
        message["To"] = ", ".join(self._s.email_to)
        message["Date"] = format_datetime(transition.at)
        message["Message-ID"] = make_msgid("lienthong", domain=self._from.rpartition("@")[2])
        message.set_content(email_body(transition))
        return message

    def _send(self, message: EmailMessage) -> None:
        """In a worker thread; every socket operation is bounded by the deadline."""
        s = self._s
        with smtplib.SMTP(self._host, s.smtp_port, timeout=s.deadline_s) as smtp:
            if s.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if s.smtp_user is not None and s.smtp_password is not None:
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(message)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Notifier:
    def __init__(
        self,
        settings: AlertSettings,
        node_id: str,
        snapshot: Snapshot,
        *,
        clock: Callable[[], datetime] = _utcnow,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self.settings = settings
        self.node_id = node_id
        self._snapshot = snapshot
        self._clock = clock
        self._max_pending = max_pending
        self._memory = AlertMemory()
        self._active: dict[tuple[str, str], Alert] = {}
        self._channels: list[_Channel] = []
        if settings.webhook_url is not None:
            self._channels.append(
                WebhookChannel(settings.webhook_url, settings.webhook_token, settings.deadline_s)
            )
        if settings.email_to:
            self._channels.append(EmailChannel(settings))
        self._pending: dict[str, deque[Transition]] = {c.name: deque() for c in self._channels}
        self._log = log.bind(node=node_id)

    @property
    def active(self) -> list[Alert]:
        """The alerts firing at the last check."""
        return list(self._active.values())

    def pending(self, channel: str) -> int:
        return len(self._pending[channel])

    async def run(self) -> None:
        """Check every ``check_every_s`` until cancelled."""
        while True:
            await self.check_once()
            await asyncio.sleep(self.settings.check_every_s)

    async def check_once(self) -> list[Transition]:
        """Judge a fresh snapshot, queue what started or ended, send what is pending."""
        now = self._clock()
        transitions: list[Transition] = []
        try:
            async with asyncio.timeout(self.settings.deadline_s):
                status = await self._snapshot()
        except (LienthongError, OSError, TimeoutError) as exc:
            self._log.warning("alerts.snapshot_failed", error=str(exc))
        else:
            transitions = self._judge(status, now)
            for channel in self._channels:
                self._enqueue(channel.name, transitions)
        async with asyncio.TaskGroup() as group:
            for channel in self._channels:
                group.create_task(self._deliver(channel))
        return transitions

    def _judge(self, status: Mapping[str, Any], now: datetime) -> list[Transition]:
        alerts = evaluate(status, now=now, memory=self._memory, thresholds=self.settings.thresholds)
        current = {alert.key: alert for alert in alerts}
        transitions = [
            Transition(RESOLVED, alert, self.node_id, now)
            for key, alert in self._active.items()
            if key not in current
        ]
        transitions += [
            Transition(FIRING, alert, self.node_id, now)
            for key, alert in current.items()
            if key not in self._active
        ]
        self._active = current
        for t in transitions:
            self._log.info(
                "alerts.transition",
                state=t.state,
                alert=t.alert.name,
                subject=t.alert.subject,
                severity=t.alert.severity,
            )
        return transitions

    def _enqueue(self, channel: str, transitions: list[Transition]) -> None:
        queue = self._pending[channel]
        queue.extend(transitions)
        while len(queue) > self._max_pending:
            dropped = queue.popleft()
            self._log.error(
                "alerts.dropped",
                channel=channel,
                state=dropped.state,
                alert=dropped.alert.name,
                subject=dropped.alert.subject,
                reason=f"more than {self._max_pending} waiting",
            )

    async def _deliver(self, channel: _Channel) -> None:
        """Send what is pending, in order; stop at the first that will not go."""
        queue = self._pending[channel.name]
        while queue:
            if not await self._send(channel, queue[0]):
                return
            queue.popleft()

    async def _send(self, channel: _Channel, transition: Transition) -> bool:
        attempts = self.settings.attempts
        for attempt in range(1, attempts + 1):
            try:
                await channel.send(transition)
            except AlertNotSent as exc:
                self._log.warning(
                    "alerts.send_failed",
                    channel=channel.name,
                    alert=transition.alert.name,
                    state=transition.state,
                    attempt=attempt,
                    error=exc.message,
                )
                if attempt < attempts:
                    await asyncio.sleep(self.settings.backoff_s * 2 ** (attempt - 1))
            else:
                self._log.info(
                    "alerts.sent",
                    channel=channel.name,
                    alert=transition.alert.name,
                    subject=transition.alert.subject,
                    state=transition.state,
                )
                return True
        return False


def notifier_for(config: NodeConfig, node_id: str, snapshot: Snapshot) -> Notifier | None:
    """The node's notifier, or None when its file has no [alerts] table."""
    if config.alerts is None:
        return None
    return Notifier(config.alerts, node_id, snapshot)
