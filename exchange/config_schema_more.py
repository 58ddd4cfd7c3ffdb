"""The ``[upstreams]`` and ``[alerts]`` tables of the node file schema
(exchange/config_schema.py), as exchange/config_upstream.py and exchange/config_alerts.py
read them."""

from __future__ import annotations

from exchange.config_schema import (
    BOOL,
    FILE_READ,
    INT_0,
    INT_1,
    NONE,
    ORGANS,
    REQUIRED,
    SECONDS,
    TEXT,
    Key,
    Table,
)

LANGSON = ("upstreams.<name>.protocol", '"langson"')
WEBHOOK = "http(s):// URL"
ADDRESS = "e-mail address"

UPSTREAM = Table(
    "upstreams.<name>",
    "One table per upstream axis this node bridges to as a client (docs/bridge.md): the "
    "national axis (VDXP) or a provincial LGSP. Its agencies are routed through it; what "
    "it brings is judged by its own `policy`.",
    (
        Key(
            "protocol",
            '"vdxp", "bkav" or "langson"',
            None,
            '"vdxp"',
            "vdxp: the national axis's SDK protocol; bkav and langson: those LGSPs'.",
            REQUIRED,
        ),
        Key(
            "endpoint",
            "http(s):// URL",
            None,
            '"https://vdxp.example/vdxp"',
            "The base address the protocol's paths are relative to.",
            REQUIRED,
        ),
        Key(
            "policy",
            '"strict", "legacy" or "quarantine"',
            '"quarantine"',
            '"quarantine"',
            "The verification policy that judges the packages fetched from it.",
        ),
        Key(
            "poll_every_s",
            SECONDS,
            "60",
            "60",
            "How often each credential polls while nothing waits.",
        ),
        Key(
            "agencies_every_s",
            SECONDS,
            "3600",
            "3600",
            "How often its agency list is fetched and merged into routing.",
        ),
        Key("deadline_s", SECONDS, "30", "30", "One call to it, connect to last byte."),
        Key(
            "backoff_ceiling_s",
            SECONDS,
            "600",
            "600",
            "Polls of an upstream that fails wait longer each time, at most this.",
        ),
        Key(
            "max_bytes",
            INT_1,
            None,
            "8388608",
            "A package fetched from it is refused past this (it is fetched into memory).",
            "`limits.inline_max_bytes`",
        ),
        Key(
            "trace_organ",
            "OrganId",
            None,
            '"000.00.00.H53"',
            "The OrganId of the TraceHeader the bridge appends to what it sends there.",
            "none: the bytes go exactly as the agency made them",
        ),
    ),
    example_name="vdxp",
)

UPSTREAM_CREDENTIALS = Table(
    "upstreams.<name>.credentials",
    "One or more per upstream: a system registered there, polled on its own schedule.",
    (
        Key(
            "name",
            TEXT,
            None,
            '"tayninh"',
            "Its name in logs and status; unique within the upstream.",
            "its systemid",
        ),
        Key(
            "systemid",
            TEXT,
            None,
            '"000.00.00.H53"',
            "Its identity there: the systemid (vdxp), the organid (bkav), X-SystemId (langson).",
            REQUIRED,
        ),
        Key(
            "secret_file",
            FILE_READ,
            None,
            '"secrets/vdxp-tayninh"',
            "The file holding its HMAC key (vdxp), token (bkav) or X-SecretKey (langson).",
            REQUIRED,
            file=True,
        ),
        Key(
            "organs",
            ORGANS,
            "[]",
            '["000.00.00.H53", "000.20.31.H53"]',
            "Our agencies it sends and fetches for.",
        ),
        Key(
            "username",
            TEXT,
            None,
            '"tayninh-lienthong"',
            "langson: the user name it logs in with.",
            'required with protocol = "langson"',
            when=LANGSON,
        ),
        Key(
            "password_file",
            FILE_READ,
            None,
            '"secrets/langson-password"',
            "langson: the file holding its password.",
            'required with protocol = "langson"',
            when=LANGSON,
            file=True,
        ),
        Key(
            "application_code",
            TEXT,
            None,
            '"LIENTHONG"',
            "langson: the application code it logs in with.",
            'required with protocol = "langson"',
            when=LANGSON,
        ),
    ),
    array=True,
)

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

UPSTREAM_TABLES = (UPSTREAM, UPSTREAM_CREDENTIALS)
ALERT_TABLES = (ALERTS, THRESHOLDS)
