"""What a node file may hold, as data: every table and key, its type as an operator reads
it, its default, an example and what it does. The loaders (exchange/config*.py) refuse a
key this schema does not know (exchange/config_keys.py); docs/configuration.md is made
from it (``lienthong config reference``); a test holds the two to what the loaders read.

A path segment in angle brackets (``sources.<name>``) is a name the operator chooses: one
table per source, per login, per client. The schema is split as the loaders are: the core
tables here, ``[http]`` in config_schema_http.py, ``[upstreams]`` and ``[alerts]`` in
config_schema_more.py.
"""

from __future__ import annotations

from dataclasses import dataclass

REQUIRED = "required"
NONE = "none"

NODE_ID = "node id: letters, digits, '-', '_', '.'"
URLS = "amqp:// URL, or a list of them"
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
            '"amqp://guest:guest@127.0.0.1:5672/"',
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
            '"amqp://province-h53:secret@10.0.0.5:5672/"',
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

CORE = (NODE, RABBITMQ, STORE, TRUST, LIMITS, LINK, DEADLINES, SOURCES, CREDENTIALS, DELIVERY)


def node_file_tables() -> tuple[Table, ...]:
    """Every table of a node file, in the order the reference shows them."""
    from exchange.config_schema_http import HTTP_TABLES
    from exchange.config_schema_more import ALERT_TABLES, UPSTREAM_TABLES

    return CORE + HTTP_TABLES + UPSTREAM_TABLES + ALERT_TABLES
