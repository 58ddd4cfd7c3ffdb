"""The [alerts] table: where alerts go, read once, with one clear message for each mistake."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from exchange.alerting import Thresholds
from exchange.config import NodeConfig, node_config_from_mapping
from exchange.config_alerts import AlertSettings
from exchange.errors import ConfigurationError
from tests.unit.test_config import GOOD


def load(extra: str, base: Path = Path("/etc/lienthong")) -> NodeConfig:
    return node_config_from_mapping(tomllib.loads(GOOD + extra), "node.toml", base)


def test_without_alerts_there_is_no_notifier() -> None:
    assert load("").alerts is None


def test_a_full_table_is_read(tmp_path: Path) -> None:
    (tmp_path / "hook.token").write_text("hook-token-1234\n")
    (tmp_path / "smtp.password").write_text("p@ss word\n")
    config = load(
        """
[alerts]
webhook_url = "https://chat.example.vn/hooks/lienthong"
webhook_token_file = "hook.token"
email_to = ["truc-ban@tayninh.gov.vn", "ops@tayninh.gov.vn"]
email_from = "lienthong@tayninh.gov.vn"
smtp_host = "mail.tayninh.gov.vn"
smtp_user = "lienthong"
smtp_password_file = "smtp.password"
check_every_s = 30
attempts = 5
backoff_s = 0
[alerts.thresholds]
link_down_after_s = 120
backlog_min = 0
cert_warn_days = 45
""",
        tmp_path,
    )
    alerts = config.alerts
    assert alerts is not None
    assert alerts.webhook_url == "https://chat.example.vn/hooks/lienthong"
    assert (alerts.webhook_token, alerts.smtp_password) == ("hook-token-1234", "p@ss word")
    assert alerts.email_to == ("truc-ban@tayninh.gov.vn", "ops@tayninh.gov.vn")
    assert (alerts.smtp_host, alerts.smtp_port, alerts.smtp_starttls) == (
        "mail.tayninh.gov.vn",
        587,
        True,
    )
    assert (alerts.check_every_s, alerts.deadline_s, alerts.attempts, alerts.backoff_s) == (
        30.0,
        10.0,
        5,
        0.0,
    )
    assert alerts.thresholds == Thresholds(link_down_after_s=120, backlog_min=0, cert_warn_days=45)
    shown = repr(alerts)
    assert "hook-token-1234" not in shown
    assert "p@ss" not in shown


def test_a_webhook_alone_is_enough() -> None:
    alerts = load('[alerts]\nwebhook_url = "http://127.0.0.1:9000/hook"').alerts
    assert alerts == AlertSettings(webhook_url="http://127.0.0.1:9000/hook")


def test_a_loopback_relay_may_take_a_password_without_starttls(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("secret")
    alerts = load(
        '[alerts]\nemail_to = ["a@b.vn"]\nemail_from = "n@b.vn"\nsmtp_host = "127.0.0.1"\n'
        'smtp_starttls = false\nsmtp_user = "u"\nsmtp_password_file = "pw"',
        tmp_path,
    ).alerts
    assert alerts is not None
    assert (alerts.smtp_port, alerts.smtp_user, alerts.smtp_password) == (25, "u", "secret")


EMAIL = '[alerts]\nemail_to = ["a@b.vn"]\nemail_from = "n@b.vn"\nsmtp_host = "mail.b.vn"\n'


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("[alerts]\n", "key 'alerts': expected webhook_url, email_to, or both"),
        (
            '[alerts]\nwebhook = "http://h/"',
            "unknown key 'alerts.webhook'; did you mean 'webhook_url'?",
        ),
        (
            '[alerts]\nwebhook_url = "ftp://h/x"',
            "key 'alerts.webhook_url': expected an http:// or https:// address, found 'ftp://h/x'",
        ),
        (
            '[alerts]\nwebhook_url = "https://"',
            "key 'alerts.webhook_url': expected an http:// or https:// address",
        ),
        (
            '[alerts]\nemail_to = ["ops@b.vn"]\nwebhook_token_file = "t"',
            "key 'alerts.webhook_token_file': expected a webhook_url to send the token to",
        ),
        (
            '[alerts]\nemail_to = "ops@b.vn"',
            "key 'alerts.email_to': expected a list of e-mail addresses, found 'ops@b.vn'",
        ),
        (
            '[alerts]\nemail_to = ["ops@b.vn\\nBcc: x@y.vn"]',
            "key 'alerts.email_to': expected a list of e-mail addresses",
        ),
        (
            '[alerts]\nemail_to = ["ops@b.vn"]\nsmtp_host = "mail.b.vn"',
            "key 'alerts.email_from': expected an e-mail address to send from, with email_to",
        ),
        (
            '[alerts]\nemail_to = ["ops@b.vn"]\nemail_from = "n@b.vn"',
            "key 'alerts.smtp_host': expected the SMTP server to send through, with email_to",
        ),
        (
            '[alerts]\nwebhook_url = "http://h/"\nsmtp_host = "mail.b.vn"',
            "key 'alerts.smtp_host': expected email_to as well",
        ),
        (EMAIL + "smtp_port = 0", "key 'alerts.smtp_port': expected a whole number, 1 or more"),
        (EMAIL + "smtp_port = 70000", "key 'alerts.smtp_port': expected a port number"),
        (EMAIL + 'smtp_starttls = "yes"', "key 'alerts.smtp_starttls': expected true or false"),
        (
            EMAIL + 'smtp_user = "u"',
            "key 'alerts.smtp_user': expected smtp_user and smtp_password_file together",
        ),
        (
            EMAIL + 'smtp_user = "u"\nsmtp_password_file = "pw"\nsmtp_starttls = false',
            "key 'alerts.smtp_starttls': expected true when smtp_user is set",
        ),
        (
            EMAIL + 'smtp_user = "u"\nsmtp_password_file = "missing"',
            "key 'alerts.smtp_password_file': cannot read /etc/lienthong/missing: "
            "No such file or directory",
        ),
        (EMAIL + "check_every_s = 0", "key 'alerts.check_every_s': expected a positive number"),
        (EMAIL + "deadline_s = -1", "key 'alerts.deadline_s': expected a positive number"),
        (EMAIL + "attempts = 0", "key 'alerts.attempts': expected a whole number, 1 or more"),
        (EMAIL + "backoff_s = -1", "key 'alerts.backoff_s': expected a number, 0 or more"),
        (EMAIL + "thresholds = 5", "key 'alerts.thresholds': expected a table"),
        (
            EMAIL + "[alerts.thresholds]\nlink_down_s = 60",
            "unknown key 'alerts.thresholds.link_down_s'; did you mean 'link_down_after_s'?",
        ),
        (
            EMAIL + "[alerts.thresholds]\nlink_down_after_s = 0",
            "key 'alerts.thresholds.link_down_after_s': expected a positive number, found 0",
        ),
        (
            EMAIL + "[alerts.thresholds]\nbacklog_growth = 2.5",
            "key 'alerts.thresholds.backlog_growth': expected a whole number, 1 or more",
        ),
        (
            EMAIL + "[alerts.thresholds]\ncert_critical_days = 40",
            "key 'alerts.thresholds.cert_critical_days': expected fewer days than "
            "cert_warn_days (30), found 40.0",
        ),
    ],
)
def test_each_mistake_has_its_message(extra: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(extra)
    assert f"node.toml: {message}" in str(caught.value)


def test_alerts_is_a_table() -> None:
    data = {**tomllib.loads(GOOD), "alerts": 3}
    with pytest.raises(ConfigurationError, match=r"node\.toml: key 'alerts': expected a table"):
        node_config_from_mapping(data, "node.toml", Path("/etc/lienthong"))


def test_a_token_file_of_several_lines_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("one\ntwo\n")
    with pytest.raises(ConfigurationError, match=r"alerts.webhook_token_file': .* one line"):
        load('[alerts]\nwebhook_url = "http://h/"\nwebhook_token_file = "t"', tmp_path)
