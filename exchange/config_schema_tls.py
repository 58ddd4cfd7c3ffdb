"""The TLS tables of a node file, as data (exchange/config_schema.py; the loader is
exchange/config_tls.py; docs/tls.md explains who checks what)."""

from __future__ import annotations

from exchange.config_schema import FILE_READ, NONE, REQUIRED, TEXT, Key, Table

_CA = Key(
    "ca",
    FILE_READ,
    None,
    '"tls/ca.pem"',
    "The CA bundle the broker's certificate must chain to; only it is trusted, never the "
    "system's store.",
    REQUIRED,
)
_CERT = Key(
    "cert",
    FILE_READ,
    None,
    '"tls/province-h53.pem"',
    "This node's client certificate; its CN, the node id, is its login with "
    "`?auth=external`. Taken up again when the file changes, for new connections.",
    "none: no client certificate",
)
_KEY = Key(
    "key",
    FILE_READ,
    None,
    '"tls/province-h53.key"',
    "The key of `cert`; both or neither.",
    "none",
)

RABBITMQ_TLS = Table(
    "rabbitmq.tls",
    "AMQPS to this node's own broker; needed with an `amqps://` `rabbitmq.url`, and "
    "refused beside an `amqp://` one.",
    (
        _CA,
        _CERT,
        _KEY,
        Key(
            "peer",
            TEXT,
            None,
            '"mq1.tayninh.gov.vn"',
            "The name the broker's certificate must carry (in its subjectAltName).",
            "the host of the URL",
        ),
    ),
)

LINK_TLS = Table(
    "link.tls",
    "AMQPS to the parent's broker; needed with an `amqps://` `link.parent_url`. Without "
    "`parent_url`, the link uses `[rabbitmq.tls]`.",
    (
        _CA,
        _CERT,
        _KEY,
        Key(
            "peer",
            TEXT,
            None,
            '"central"',
            "The name the parent's broker certificate must carry: the parent's node id, "
            "whatever host the URL names.",
            "`node.parent`",
        ),
    ),
)

HTTP_TLS = Table(
    "http.tls",
    "HTTPS for the node's HTTP faces (REST API, SDK facade, console, transfers).",
    (
        Key("cert", FILE_READ, None, '"tls/http.pem"', "The server certificate.", REQUIRED),
        Key("key", FILE_READ, None, '"tls/http.key"', "Its key.", REQUIRED),
        Key(
            "client_ca",
            FILE_READ,
            None,
            '"tls/agencies-ca.pem"',
            "Set: every caller presents a client certificate from this CA bundle, before "
            "any request is read.",
            NONE + ": client certificates are not asked for",
        ),
    ),
)

TLS_TABLES = (RABBITMQ_TLS, LINK_TLS, HTTP_TLS)
