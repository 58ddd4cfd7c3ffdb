"""The node file schema's tables (exchange/config_schema.py) for the traffic: its limits,
the link to the parent, deadlines, the sources and logins that submit, and delivery."""

from __future__ import annotations

from exchange.config_schema import (
    BOOL,
    FILE_READ,
    INT_0,
    INT_1,
    NONE,
    ORGANS,
    REQUIRED,
    URLS,
    Key,
    Table,
)

LIMITS = Table(
    "limits",
    "Sizes, tries and concurrency.",
    (
        Key(
            "inline_max_bytes",
            INT_1,
            "8388608",
            "8388608",
            "Above it, a package is spooled to disk and crosses links by claim check over "
            "HTTP (docs/large-packages.md); at most this is held in memory.",
        ),
        Key(
            "max_package_bytes",
            INT_1 + ", ≥ inline_max_bytes",
            "1073741824",
            "1073741824",
            "No package above it is taken; it is refused before it is read.",
        ),
        Key(
            "max_attempts",
            INT_1,
            "5",
            "5",
            "Tries of a transient failure before the package is dead-lettered for an operator.",
        ),
        Key(
            "admission_workers",
            INT_0,
            None,
            "1",
            "Processes that parse, validate and verify packages; 0: a thread of the node's "
            "own process.",
            "one fewer than the usable cores, at least 1, at most 4",
        ),
        Key(
            "intake_concurrency",
            INT_1,
            "16",
            "16",
            "Submissions in flight at once (at most `rabbitmq.prefetch`).",
        ),
        Key(
            "link_concurrency",
            INT_1,
            "8",
            "8",
            "Packages from a neighbour in flight at once, per link lane (at most "
            "`rabbitmq.prefetch`).",
        ),
    ),
)

LINK = Table(
    "link",
    "The link to `node.parent`, opened by this node on the parent's broker (docs/wire.md).",
    (
        Key(
            "parent_url",
            URLS,
            None,
            '"amqps://mq.lienthong.gov.vn:5671/?auth=external"',
            "The parent's broker; a list for the parent's cluster, as `rabbitmq.url`.",
            "`rabbitmq.url`",
        ),
        Key(
            "max_bytes",
            INT_1,
            "67108864",
            "67108864",
            "Each lane refuses publishes past this (64 MiB); give both ends the same.",
        ),
        Key(
            "verify_login",
            BOOL,
            "false",
            "true",
            "As a parent: a child's package is taken only when published under that child's "
            "login (its node id, or `link-<node id>`; with AMQPS and `auth=external`, its "
            "certificate's CN), else `link.login_mismatch` (docs/tls.md).",
        ),
        Key(
            "expire_after_hours",
            "hours (number > 0)",
            "168",
            "168",
            "The older name of `deadlines.ttl_hours`, still read; the two may not differ.",
        ),
        Key(
            "heartbeat_s",
            INT_1,
            "15",
            "15",
            "AMQP heartbeat of the link and of the node's own broker connection (a "
            "`?heartbeat=N` in a URL wins): a link silent for about three heartbeats is "
            "given up.",
        ),
        Key(
            "transfer_url",
            "http(s):// URL",
            None,
            '"https://lienthong.tayninh.gov.vn:8480"',
            "The parent's HTTP face, where the bytes of large packages go "
            "(docs/large-packages.md).",
            NONE,
        ),
        Key(
            "transfer_token_file",
            FILE_READ,
            None,
            '"secrets/link-token"',
            "The file holding this node's token at the parent (its `[http.links.<node>]`).",
            NONE,
            file=True,
        ),
    ),
)

DEADLINES = Table(
    "deadlines",
    "When a delivered document is due (docs/deadlines.md): by the close of the working day "
    "it arrived on, or of the next one when it arrived after hours, on a weekend or a "
    "holiday. Every key is optional.",
    (
        Key(
            "time_zone",
            "IANA time zone name",
            '"Asia/Ho_Chi_Minh"',
            '"Asia/Ho_Chi_Minh"',
            "Working hours are read in it.",
        ),
        Key(
            "work_days",
            'list of "mon" … "sun"',
            '["mon", "tue", "wed", "thu", "fri"]',
            '["mon", "tue", "wed", "thu", "fri"]',
            "The working days of the week.",
        ),
        Key(
            "work_hours",
            '"HH:MM-HH:MM"',
            '"07:30-17:00"',
            '"07:30-17:00"',
            "Local opening and closing time.",
        ),
        Key(
            "holidays",
            "list of dates (YYYY-MM-DD)",
            "[]",
            '["2027-02-05", "2027-02-08"]',
            "Days off, kept to the government's yearly announcement; the node knows no "
            "other calendar.",
        ),
        Key(
            "working_saturdays",
            "list of dates (Saturdays)",
            "[]",
            '["2027-02-20"]',
            "Saturdays worked to make up for a bridge day (làm bù); never also a holiday.",
        ),
        Key(
            "ttl_hours",
            "hours (number > 0)",
            "168",
            "168",
            "A copy waiting longer for its link fails as expired, and its sender is told.",
        ),
    ),
)

SOURCES = Table(
    "sources.<name>",
    "One table per source: the verification policy that judges what it submits. A source "
    'is "amqp" (the default of every login and calling system), or a name that '
    "`[credentials.<login>]` or `[http.clients.<name>]` gives as its `source`. A source "
    'without a table is judged "strict".',
    (
        Key(
            "policy",
            '"strict", "legacy", "legacy-or-unsigned" or "quarantine"',
            None,
            '"legacy-or-unsigned"',
            "strict: SHA-256 or stronger signatures only; legacy: SHA-1 too, labelled "
            "legacy; legacy-or-unsigned: unsigned packages too; quarantine: SHA-1 as legacy, "
            "and a failing or missing signature held for an operator.",
            REQUIRED,
        ),
    ),
    example_name="vendor-gateway",
)

CREDENTIALS = Table(
    "credentials.<login>",
    "One table per RabbitMQ login of an agency system; RabbitMQ checks that a message's "
    '`user_id` is the login that sent it. Without any, every login is source "amqp" and '
    "may act for any hosted agency: a development set-up only (docs/amqp-face.md).",
    (
        Key(
            "source",
            '"amqp" or a [sources] name',
            '"amqp"',
            '"vendor-gateway"',
            "The source, so the policy, that judges what this login submits.",
        ),
        Key(
            "organs",
            ORGANS,
            None,
            '["000.00.00.H53", "000.21.31.H53"]',
            "The agencies it may send as and fetch for.",
            "any agency",
        ),
        Key(
            "trusted",
            BOOL,
            "false",
            "false",
            "May say itself which source what it sends comes from (operators' replays, bridges).",
        ),
        Key(
            "rate_per_s",
            "number > 0",
            "50",
            "50",
            "Submissions a second on average, with bursts of twice that.",
            "unlimited when trusted",
        ),
    ),
    example_name="vendor-x",
)

DELIVERY = Table(
    "delivery",
    "How mail reaches agencies over AMQP (docs/amqp-face.md).",
    (
        Key(
            "push",
            ORGANS,
            "[]",
            '["000.21.31.H53"]',
            "Agencies whose mail is pushed to their own queue; the others fetch it.",
        ),
    ),
)

TRAFFIC_TABLES = (LIMITS, LINK, DEADLINES, SOURCES, CREDENTIALS, DELIVERY)
