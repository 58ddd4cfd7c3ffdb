"""What a node file may hold, as data: every table and key, its type as an operator reads
it, its default, an example and what it does. The loaders (exchange/config*.py) refuse a
key this schema does not know (exchange/config_keys.py); docs/configuration.md is made
from it (``lienthong config reference``); a test holds the two to what the loaders read.

A path segment in angle brackets (``sources.<name>``) is a name the operator chooses: one
table per source, per login, per client. The required tables are here; limits, the link,
deadlines, sources, logins and delivery in config_schema_traffic.py; ``[http]``,
``[upstreams]`` and ``[alerts]`` beside their loaders, in config_schema_http.py,
config_schema_upstream.py and config_schema_alerts.py.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED = "required"
NONE = "none"

NODE_ID = "node id: letters, digits, '-', '_', '.'"
URLS = "amqp:// or amqps:// URL, or a list of them"
INT_1 = "integer ≥ 1"
INT_0 = "integer ≥ 0"
SECONDS = "seconds (number > 0)"
BOOL = "true or false"
TEXT = "string"
PATH = "file path"
FOLDER = "folder path"
FILE_READ = "file path, read at start"
ORGANS = "list of OrganIds"


@dataclass(frozen=True)
class Key:
    name: str
    type: str  # as an operator reads it
    default: str | None  # a TOML literal, or None when there is no fixed default
    example: str  # a TOML literal
    meaning: str
    otherwise: str = ""  # in words: what an absent key means, or a note on the default
    when: tuple[str, str] | None = None  # read only when that key has that TOML value
    file: bool = False  # the loader reads the file it names when the node starts

    @property
    def default_text(self) -> str:
        if self.default is None:
            return self.otherwise
        return f"`{self.default}`" + (f" ({self.otherwise})" if self.otherwise else "")


@dataclass(frozen=True)
class Table:
    path: str  # dotted; a <segment> is a name the operator chooses
    meaning: str
    keys: tuple[Key, ...]
    example_name: str = ""  # a <named> table: the name the examples give it
    array: bool = False  # [[path]]: a list of tables

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


def is_named(segment: str) -> bool:
    """A segment the operator names (``<login>``), rather than a fixed table name."""
    return segment.startswith("<")


NODE = Table(
    "node",
    "Who this node is. Required.",
    (
        Key(
            "id",
            NODE_ID + " (at most 63)",
            None,
            '"province-h53"',
            "This node's id: its queues, its certificate (`<id>.pem`) and the directory's "
            "home nodes use it.",
            REQUIRED,
        ),
        Key(
            "parent",
            NODE_ID,
            None,
            '"central"',
            "The node this one links to, up the tree; the link is opened from here "
            "(`[link]`). Absent on the root.",
            NONE,
        ),
        Key(
            "wire_version",
            "1 or 2",
            "1",
            "1",
            "The envelope version this node writes; it reads both. 2 only once every node "
            'its packages can reach reads it (docs/wire.md, "Versions and upgrades").',
        ),
    ),
)

RABBITMQ = Table(
    "rabbitmq",
    "This node's own broker. Required.",
    (
        Key(
            "url",
            URLS,
            None,
            '"amqps://mq.tayninh.gov.vn:5671/?auth=external"',
            "The broker. A list names a cluster's nodes, tried in turn on every (re)connect.",
            REQUIRED,
        ),
        Key(
            "prefetch",
            INT_1,
            "32",
            "32",
            "Unacknowledged deliveries held at once per consumer; it also caps "
            "`limits.intake_concurrency` and `limits.link_concurrency`.",
        ),
        Key(
            "publish_timeout_s",
            SECONDS,
            "10",
            "10",
            "Every publish waits at most this long for the broker's confirm.",
        ),
        Key(
            "quorum",
            BOOL,
            "false",
            "false",
            "Declare quorum queues (with a delivery limit) instead of classic ones.",
        ),
    ),
)

STORE = Table(
    "store",
    "Where the node keeps packages, copies, receipts and the evidence log. Required.",
    (
        Key("kind", '"sqlite" or "postgres"', None, '"sqlite"', "The store.", REQUIRED),
        Key(
            "path",
            FOLDER,
            None,
            '"var/province-h53"',
            "SQLite: the folder holding `lienthong.db` and `blobs/`.",
            'required with kind = "sqlite"',
            when=("store.kind", '"sqlite"'),
        ),
        Key(
            "dsn",
            "PostgreSQL connection string",
            None,
            '"postgresql://lienthong@db.example/lienthong"',
            "PostgreSQL: the database.",
            'required with kind = "postgres"',
            when=("store.kind", '"postgres"'),
        ),
        Key(
            "schema",
            "plain identifier",
            '"lienthong"',
            '"lienthong"',
            "PostgreSQL: the schema that holds the node's tables.",
        ),
        Key(
            "pool_size",
            INT_1,
            "4",
            "4",
            "PostgreSQL: the most connections the node opens.",
        ),
        Key(
            "dedup_retention_days",
            INT_1,
            "90",
            "90",
            "How long a resubmitted package still gets its first answer instead of being "
            "taken again.",
        ),
        Key(
            "instance",
            TEXT,
            '"main"',
            '"main"',
            "This service instance's evidence chain. Several instances on one PostgreSQL "
            "need one name each (or `lienthong serve --instance NAME`).",
        ),
        Key(
            "checkpoint_every_s",
            SECONDS,
            "300",
            "300",
            "How often the head of the evidence chain is signed and sent to the parent.",
        ),
        Key(
            "lease_s",
            SECONDS,
            "60",
            "60",
            "PostgreSQL: how long an instance holds the rows it took to relay, should it "
            "hang, before another takes them (docs/operations.md).",
        ),
    ),
)

TRUST = Table(
    "trust",
    "What the node trusts: CAs, the agency directory, node keys. Required.",
    (
        Key(
            "ca",
            PATH,
            None,
            '"pki/ca.pem"',
            "PEM bundle of the CAs agencies' certificates must chain to; never the system store.",
            REQUIRED,
        ),
        Key(
            "crls",
            "list of file paths",
            "[]",
            '["pki/ca.crl"]',
            "CRLs (PEM or DER). Once any is given, every issuer needs a current one.",
        ),
        Key(
            "directory",
            PATH,
            None,
            '"directory.json"',
            "The agency directory: the signed document (with `directory_signer`), or a "
            "TOML file, unsigned, for development.",
            REQUIRED,
        ),
        Key(
            "directory_signer",
            NODE_ID,
            None,
            '"central"',
            "The node (the root) whose key signs directories. Without it, the directory "
            "must be an unsigned TOML file.",
            NONE,
        ),
        Key(
            "directory_check_s",
            SECONDS,
            "30",
            "30",
            "On the root: how often it looks for a newer signed directory to send down.",
        ),
        Key(
            "node_key",
            PATH,
            None,
            '"pki/nodes/province-h53.key"',
            "This node's private key (PEM): it signs what the node sends (transport "
            "envelopes, receipts, checkpoints).",
            REQUIRED,
        ),
        Key(
            "node_certs",
            FOLDER,
            None,
            '"pki/nodes"',
            "Peers' node certificates, one `<node id>.pem` each.",
            REQUIRED,
        ),
    ),
)

CORE = (NODE, RABBITMQ, STORE, TRUST)


def node_file_tables() -> tuple[Table, ...]:
    """Every table of a node file, in the order the reference shows them."""
    from exchange.config_schema_alerts import ALERT_TABLES
    from exchange.config_schema_http import HTTP_TABLES
    from exchange.config_schema_tls import TLS_TABLES
    from exchange.config_schema_traffic import TRAFFIC_TABLES
    from exchange.config_schema_upstream import UPSTREAM_TABLES

    return CORE + TRAFFIC_TABLES + HTTP_TABLES + TLS_TABLES + UPSTREAM_TABLES + ALERT_TABLES
