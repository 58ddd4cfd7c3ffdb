"""The ``[alerts]`` tables of the node file schema (exchange/config_schema.py), as
exchange/config_alerts.py reads them."""

from __future__ import annotations

from exchange.config_schema import BOOL, FILE_READ, INT_0, INT_1, NONE, SECONDS, TEXT, Key, Table

WEBHOOK = "http(s):// URL"
ADDRESS = "e-mail address"

ALERTS = Table(
    "alerts",
    "Where a node without Prometheus sends its own alerts, once when each starts and once "
    "when it ends (docs/alerts.md). Give `webhook_url`, `email_to`, or both. Without this "
    "table, the node sends none.",
    (
        Key(
            "webhook_url",
            WEBHOOK,
            None,
            '"https://chat.tayninh.gov.vn/hooks/lienthong"',
            "Each transition is POSTed here as JSON.",
            NONE,
        ),
        Key(
            "webhook_token_file",
            FILE_READ + " (one line)",
            None,
            '"secrets/alerts-webhook"',
            'Its token is sent to the webhook as "Authorization: Bearer".',
            "none; needs webhook_url",
            file=True,
        ),
        Key(
            "email_to",
            "list of e-mail addresses",
            "[]",
            '["truc-ban@tayninh.gov.vn"]',
            "Who gets each transition by e-mail.",
        ),
        Key(
            "email_from",
            ADDRESS,
            None,
            '"lienthong@tayninh.gov.vn"',
            "The sender of those e-mails.",
            "required with email_to",
        ),
        Key(
            "smtp_host",
            "host name or address",
            None,
            '"mail.tayninh.gov.vn"',
            "The SMTP server the e-mails go through.",
            "required with email_to",
        ),
        Key(
            "smtp_port",
            "integer 1 to 65535",
            "587",
            "587",
            "Its port.",
            "25 when smtp_starttls = false",
        ),
        Key(
            "smtp_starttls",
            BOOL,
            "true",
            "true",
            "Use STARTTLS. A password is sent only over it, except to a relay on this host "
            "(localhost).",
        ),
        Key(
            "smtp_user",
            TEXT,
            None,
            '"lienthong"',
            "The SMTP login; with smtp_password_file, or neither.",
            NONE,
        ),
        Key(
            "smtp_password_file",
            FILE_READ + " (one line)",
            None,
            '"secrets/smtp"',
            "The file holding the SMTP password.",
            "none; with smtp_user",
            file=True,
        ),
        Key("check_every_s", SECONDS, "60", "60", "How often the node looks at itself."),
        Key(
            "deadline_s",
            SECONDS,
            "10",
            "10",
            "One webhook call, or each step of one e-mail.",
        ),
        Key("attempts", INT_1, "3", "3", "Tries per message in one check."),
        Key(
            "backoff_s",
            "seconds (number ≥ 0)",
            "1",
            "1",
            "The wait before the second try, doubled for each next one.",
        ),
    ),
)


def _waits(name: str, default: str, alert: str) -> Key:
    return Key(name, SECONDS, default, default, f"{alert} fires when it has held this long.")


THRESHOLDS = Table(
    "alerts.thresholds",
    "When the node's own alerts fire; the same conditions as the Prometheus rules "
    "(deploy/prometheus/lienthong-alerts.yml). Every key is optional.",
    (
        _waits("link_down_after_s", "300", "LienthongLinkDown"),
        Key(
            "backlog_min",
            INT_0,
            "100",
            "100",
            "LienthongBacklogGrowing: a link's backlog above this and rising over the window …",
        ),
        Key(
            "backlog_growth",
            INT_1,
            "50",
            "50",
            "… or this many more than a window ago.",
        ),
        Key("backlog_window_s", SECONDS, "900", "900", "The backlog's window."),
        _waits("dead_letters_after_s", "60", "LienthongDeadLetters"),
        _waits("overdue_after_s", "3600", "LienthongOverdueAcknowledgements"),
        Key(
            "cert_warn_days",
            "days (number > 0)",
            "30",
            "30",
            "LienthongCertificateExpiring: a certificate has fewer days left.",
        ),
        Key(
            "cert_critical_days",
            "days (number > 0), < cert_warn_days",
            "7",
            "7",
            "LienthongCertificateExpiringSoon: a certificate has fewer days left.",
        ),
        Key(
            "clock_skew_s",
            SECONDS,
            "60",
            "60",
            "LienthongClockSkew: the clock is further off its reference …",
        ),
        Key("clock_skew_for_s", SECONDS, "600", "600", "… for this long."),
        Key(
            "directory_stale_s",
            SECONDS,
            "604800",
            "604800",
            "LienthongDirectoryStale: the signed directory was issued longer ago.",
        ),
        _waits("upstream_down_after_s", "600", "LienthongUpstreamDown"),
    ),
)

ALERT_TABLES = (ALERTS, THRESHOLDS)
