"""The ``[http]`` tables of the node file schema (exchange/config_schema.py): the REST API,
the SDK facade, operators and child nodes' transfers, as exchange/config_http.py reads
them."""

from __future__ import annotations

from exchange.config_schema import FILE_READ, ORGANS, REQUIRED, SECONDS, Key, Table

SHA256 = "SHA-256 of the token: 64 lowercase hex digits"


def _token(meaning: str, otherwise: str, example: str) -> Key:
    return Key("token_sha256", SHA256, None, f'"{example}"', meaning, otherwise)


HTTP = Table(
    "http",
    "The node's HTTP face: the REST API (docs/http-api.md), the national-axis SDK facade "
    "(docs/sdk-facade.md), the operators' endpoints and console (docs/operations.md), and "
    "large packages' transfers. Without this table, none of them.",
    (
        Key(
            "listen",
            "host:port",
            None,
            '"127.0.0.1:8480"',
            "Where the HTTP face listens.",
            "required with [http]",
        ),
        Key(
            "header_timeout_s",
            SECONDS,
            "15",
            "15",
            "A connection sends a whole request head within this, and is closed after this "
            "long idle between requests.",
        ),
        Key(
            "body_timeout_s",
            SECONDS,
            "60",
            "60",
            "A request body arrives within this plus a second per 64 KiB it brings, else "
            "408 (http.request_timeout).",
        ),
        Key(
            "refusal_hold_s",
            "seconds, 0 to 60",
            "1",
            "1",
            "A caller refused again and again waits for its answer: past 10 unauthenticated "
            "answers to one address (5 a second on average), each further 401 goes out after "
            "this; a 429 goes out when its caller may call again, after at most this. At most "
            "1,024 answers are held at once. 0: every answer at once.",
        ),
    ),
)

CLIENTS = Table(
    "http.clients.<name>",
    "One table per calling system (an agency's document software): its REST token, its SDK "
    "facade identity, or both, and what it may do. No two credentials of `[http]` share a "
    "token.",
    (
        _token(
            "REST: the SHA-256 of its bearer token (`printf %s TOKEN | sha256sum`), never the "
            "token.",
            "none; give it, systemid, or both",
            "50f88aa457efc9d22985f9f0efd335f30b8fd187a999b69a70f11e6a8be39f4f",
        ),
        Key(
            "systemid",
            "string",
            None,
            '"000.00.00.H53"',
            "SDK facade: the `XroadVnpt-systemid` it calls with.",
            "none; with hmac_secret_file",
        ),
        Key(
            "hmac_secret_file",
            FILE_READ + " (16 bytes or more)",
            None,
            '"secrets/qlvb-tayninh"',
            "SDK facade: the file holding the HMAC secret it shares with the node.",
            "none; with systemid",
            file=True,
        ),
        Key(
            "organs",
            ORGANS,
            "[]",
            '["000.00.00.H53", "000.00.11.H53"]',
            "The agencies it may send as and read for; a hosted document system lists every "
            "agency it serves.",
        ),
        Key(
            "source",
            '"amqp" or a [sources] name',
            '"amqp"',
            '"amqp"',
            "The source, so the verification policy, of what it sends.",
        ),
        Key(
            "rate_per_s",
            "number > 0",
            "20",
            "20",
            "Requests a second on average, with bursts of twice that; past it, 429.",
        ),
    ),
    example_name="qlvb-tayninh",
)

OPERATORS = Table(
    "http.operators.<name>",
    "One table per operator credential (a person, a team, a scraper): never an agency's "
    "token (docs/operations.md).",
    (
        _token(
            "The SHA-256 of its bearer token.",
            REQUIRED,
            "cadaee6d96cfc6f48b78f8783c9493f48be29ff3e90ac85c219f014cb73b1eae",
        ),
        Key(
            "role",
            '"operator" or "viewer"',
            '"operator"',
            '"operator"',
            "operator: sees and acts; viewer: sees everything, acts on nothing (GET only).",
        ),
    ),
    example_name="ops-tayninh",
)

LINKS = Table(
    "http.links.<node>",
    "One table per child node, by its node id: its token opens `/v1/links/` (large "
    "packages' bytes, docs/large-packages.md) and nothing else.",
    (
        _token(
            "The SHA-256 of the child's token (the child's `link.transfer_token_file` holds "
            "the token).",
            REQUIRED,
            "8ddfd4554eb2dd8651499b2aa053b3756d7aa8dde2c277046f7ef76675c590c5",
        ),
    ),
    example_name="commune-21-31-h53",
)

HTTP_TABLES = (HTTP, CLIENTS, OPERATORS, LINKS)
