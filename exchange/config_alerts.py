"""The ``[alerts]`` table of a node file: where a node without Prometheus sends its alerts
(docs/alerts.md). No table, no notifier.

```toml
[alerts]
webhook_url = "https://chat.tayninh.gov.vn/hooks/lienthong"   # JSON POST per transition
webhook_token_file = "secrets/alerts-webhook"   # optional: sent as "Authorization: Bearer"
email_to = ["truc-ban@tayninh.gov.vn"]
email_from = "lienthong@tayninh.gov.vn"
smtp_host = "mail.tayninh.gov.vn"
smtp_port = 587
smtp_starttls = true
smtp_user = "lienthong"                      # with smtp_password_file, or neither
smtp_password_file = "secrets/smtp"
check_every_s = 60                           # how often the node looks at itself
deadline_s = 10                              # one webhook call or one e-mail, end to end
attempts = 3                                 # tries per transition in one check
backoff_s = 1                                # before the 2nd try; doubled each time

[alerts.thresholds]                          # exchange/alerting.py Thresholds: any of them
link_down_after_s = 300
cert_warn_days = 30
```

Unknown keys are refused before this module reads the table (exchange/config_keys.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from exchange.alerting import Thresholds
from exchange.config_schema_alerts import ALERTS
from exchange.errors import ConfigurationError

_ADDRESS = re.compile(r"[^@\s,;<>\"]+@[^@\s,;<>\"]+\.[^@\s,;<>\"]+")
_HOST = re.compile(r"[A-Za-z0-9.:\[\]_-]+")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})
_WHOLE = frozenset({"backlog_min", "backlog_growth"})  # counts; the other thresholds are times


@dataclass(frozen=True)
class AlertSettings:
    webhook_url: str | None = None
    webhook_token: str | None = field(default=None, repr=False)  # never logged
    email_to: tuple[str, ...] = ()
    email_from: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)  # never logged
    check_every_s: float = 60.0
    deadline_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 1.0
    thresholds: Thresholds = field(default_factory=Thresholds)


class _Table:
    def __init__(self, table: Mapping[str, Any], source: str, base: Path) -> None:
        self.table = table
        self.where = f"{source}: key 'alerts"
        self.base = base

    def fail(self, key: str, expected: str, found: object = ...) -> ConfigurationError:
        shown = "" if found is ... else f", found {found!r}"
        dot = f".{key}" if key else ""
        return ConfigurationError(f"{self.where}{dot}': expected {expected}{shown}")

    def text(self, key: str, expected: str, pattern: re.Pattern[str] | None = None) -> str | None:
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value or (pattern and not pattern.fullmatch(value)):
            raise self.fail(key, expected, value)
        return value

    def number(self, key: str, default: float, *, zero: bool = False) -> float:
        value = self.table.get(key, default)
        expected = "a number, 0 or more" if zero else "a positive number"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, expected, value)
        if value < 0 or (value == 0 and not zero):
            raise self.fail(key, expected, value)
        return float(value)

    def secret(self, key: str) -> str | None:
        name = self.text(key, "a file path")
        if name is None:
            return None
        path = Path(name) if Path(name).is_absolute() else self.base / name
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ConfigurationError(f"{self.where}.{key}': cannot read {path}: {reason}") from exc
        if not value or "\n" in value or "\r" in value:
            raise ConfigurationError(f"{self.where}.{key}': {path} should hold one line")
        return value


def alert_settings(table: object, source: str, base: Path) -> AlertSettings | None:
    if table is None:
        return None
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{source}: key 'alerts': expected a table")
    t = _Table(table, source, base)
    webhook_url = t.text("webhook_url", "an http:// or https:// address")
    if webhook_url is not None:
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise t.fail("webhook_url", "an http:// or https:// address", webhook_url)
    if "webhook_token_file" in table and webhook_url is None:
        raise t.fail("webhook_token_file", "a webhook_url to send the token to")
    email_to = _recipients(t)
    if webhook_url is None and not email_to:
        raise t.fail("", "webhook_url, email_to, or both")
    settings = AlertSettings(
        webhook_url=webhook_url,
        webhook_token=t.secret("webhook_token_file"),
        email_to=email_to,
        check_every_s=t.number("check_every_s", 60.0),
        deadline_s=t.number("deadline_s", 10.0),
        attempts=int(_whole(t, "attempts", 3, least=1)),
        backoff_s=t.number("backoff_s", 1.0, zero=True),
        thresholds=_thresholds(t, source),
    )
    return _email(t, settings) if email_to else _no_email(t, settings)


def _whole(t: _Table, key: str, default: int, *, least: int) -> int:
    value = t.table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise t.fail(key, f"a whole number, {least} or more", value)
    return value


def _recipients(t: _Table) -> tuple[str, ...]:
    value = t.table.get("email_to", [])
    expected = "a list of e-mail addresses"
    if not isinstance(value, list) or not all(
        isinstance(a, str) and _ADDRESS.fullmatch(a) for a in value
    ):
        raise t.fail("email_to", expected, value)
    return tuple(value)


def _email(t: _Table, settings: AlertSettings) -> AlertSettings:
    sender = t.text("email_from", "an e-mail address", _ADDRESS)
    if sender is None:
        raise t.fail("email_from", "an e-mail address to send from, with email_to")
    host = t.text("smtp_host", "a host name or address", _HOST)
    if host is None:
        raise t.fail("smtp_host", "the SMTP server to send through, with email_to")
    starttls = t.table.get("smtp_starttls", True)
    if not isinstance(starttls, bool):
        raise t.fail("smtp_starttls", "true or false", starttls)
    port = _whole(t, "smtp_port", 587 if starttls else 25, least=1)
    if port > 65535:
        raise t.fail("smtp_port", "a port number, 1 to 65535", port)
    user = t.text("smtp_user", "a user name")
    if (user is None) != ("smtp_password_file" not in t.table):
        raise t.fail("smtp_user", "smtp_user and smtp_password_file together, or neither")
    if user is not None and not starttls and host not in _LOOPBACK:
        raise t.fail(
            "smtp_starttls", "true when smtp_user is set: the password would cross in clear"
        )
    return replace(
        settings,
        email_from=sender,
        smtp_host=host,
        smtp_port=port,
        smtp_starttls=starttls,
        smtp_user=user,
        smtp_password=t.secret("smtp_password_file"),
    )


def _no_email(t: _Table, settings: AlertSettings) -> AlertSettings:
    e_mail = [key.name for key in ALERTS.keys if key.name.startswith(("smtp_", "email_"))]
    given = [name for name in e_mail if name in t.table]
    if given:
        raise t.fail(given[0], "email_to as well (no e-mail is sent without recipients)")
    return settings


def _thresholds(t: _Table, source: str) -> Thresholds:
    table = t.table.get("thresholds", {})
    if not isinstance(table, Mapping):
        raise t.fail("thresholds", "a table")
    sub = _Table(table, source, t.base)
    sub.where = f"{source}: key 'alerts.thresholds"
    values: dict[str, Any] = {}
    for name in table:
        default = getattr(Thresholds(), name)
        if name in _WHOLE:
            values[name] = _whole(sub, name, default, least=0 if name == "backlog_min" else 1)
        else:
            values[name] = sub.number(name, default)
    thresholds = Thresholds(**values)
    if thresholds.cert_critical_days >= thresholds.cert_warn_days:
        raise sub.fail(
            "cert_critical_days",
            f"fewer days than cert_warn_days ({thresholds.cert_warn_days:g})",
            thresholds.cert_critical_days,
        )
    return thresholds
