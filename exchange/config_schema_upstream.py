"""The ``[upstreams]`` tables of the node file schema (exchange/config_schema.py), as
exchange/config_upstream.py reads them."""

from __future__ import annotations

from exchange.config_schema import (
    FILE_READ,
    INT_1,
    ORGANS,
    REQUIRED,
    SECONDS,
    TEXT,
    Key,
    Table,
)

LANGSON = ("upstreams.<name>.protocol", '"langson"')

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

UPSTREAM_TABLES = (UPSTREAM, UPSTREAM_CREDENTIALS)
