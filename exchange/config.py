"""Node configuration: data, read once at the entry point, checked with one clear message
per mistake (file, key, what was expected), then passed in. Reading the file is the
caller's business (adapters/config_files.py); this module only judges its content.

A node file, in TOML::

    [node]
    id = "province-h53"            # letters, digits, '-', '_', '.'
    parent = "central"             # the node this one links to (optional)
    wire_version = 1               # the envelope version it writes: 1 until every node
                                   # reads 2 (docs/wire.md, "Versions")

    [rabbitmq]
    url = "amqp://guest:guest@127.0.0.1:5672/"   # or, on a cluster, a list of its nodes,
                                   # tried in turn, on every reconnect too:
                                   # url = ["amqp://u:p@mq1:5672/", "amqp://u:p@mq2:5672/"]
    prefetch = 32
    publish_timeout_s = 10.0
    quorum = false                 # quorum queues (with a delivery limit) when true
    # [rabbitmq.tls]: ca, cert, key, peer, with an amqps:// url (exchange/config_tls.py)

    [store]
    kind = "sqlite"                # or "postgres"
    path = "var/province-h53"      # sqlite: a folder
    # dsn = "postgresql://postgres@127.0.0.1/lienthong"; schema = "lienthong"
    dedup_retention_days = 90
    instance = "main"              # this service instance's evidence chain; with several
                                   # instances, one each (lienthong serve --instance NAME)
    lease_s = 60                   # postgres: how long an instance holds what it took to
                                   # relay, should it hang (docs/operations.md)

    [trust]
    ca = "pki/ca.pem"              # the CA bundle agencies' certificates must chain to
    crls = []
    directory = "directory.json"   # the signed directory this node keeps (a TOML file:
                                   # unsigned, for development, without directory_signer)
    directory_signer = "central"   # the node (the root) whose key signs directories
    directory_check_s = 30         # the root: how often it looks for a newer one
    node_key = "pki/nodes/province-h53.key"
    node_certs = "pki/nodes"       # peers' node certificates, <node id>.pem

    [limits]
    inline_max_bytes = 8388608     # above it, a package travels by claim check over HTTP
                                   # (docs/large-packages.md); at most this in memory
    max_package_bytes = 1073741824 # no package above it is taken (refused before it is read)
    max_attempts = 5
    admission_workers = 1          # processes that parse, validate and verify; by default
                                   # one fewer than the usable cores, at most 4 (the node's
                                   # own process uses one); 0: a thread of the node's process
    intake_concurrency = 16        # submissions in flight at once (at most prefetch)
    link_concurrency = 8           # packages from a neighbour in flight, per link lane

    [sources.amqp]                 # one table per source: which policy it is judged by
    policy = "strict"

    [credentials.vendor-x]         # one table per RabbitMQ login (checked as user_id)
    source = "vendor-gateway"      # its submissions are judged by that source's policy
    organs = ["000.00.00.H53"]     # it may send as and fetch for these only
    trusted = false                # true: may name the source (operators' replays)
    rate_per_s = 50                # submissions a second (bursts of twice that); the default
                                   # for a login that is not trusted (trusted: unlimited)
    # Without any [credentials], every login is the "amqp" source and may fetch for any
    # hosted agency: a development set-up only.

    [link]                         # the link to node.parent, opened by this node
    parent_url = "amqp://province-h53:secret@10.0.0.5:5672/"   # default: rabbitmq.url;
                                   # a list for the parent's cluster, as rabbitmq.url
    max_bytes = 67108864           # each lane refuses publishes past this (64 MiB)
    heartbeat_s = 15               # AMQP heartbeat of the link and of the node's own broker
                                   # connection (?heartbeat=N in a URL wins)
    transfer_url = "https://lienthong.tayninh.gov.vn:8480"   # the parent's HTTP face: the
                                   # bytes of large packages (docs/large-packages.md)
    transfer_token_file = "secrets/link-token"   # this node's [http.links.<id>] token there
    verify_login = false           # a parent: each child publishes under its own login
    # [link.tls]: ca, cert, key, peer (the parent's node id), with an amqps:// parent_url

    [deadlines]                    # when a delivered document is due (docs/deadlines.md)
    time_zone = "Asia/Ho_Chi_Minh"
    work_days = ["mon", "tue", "wed", "thu", "fri"]
    work_hours = "07:30-17:00"     # local, opening-closing
    holidays = ["2027-02-05"]      # days off (ISO dates), kept to the government's announcements
    working_saturdays = []         # Saturdays worked to make up for a bridge ("làm bù")
    ttl_hours = 168                # a copy waiting longer for its link fails: "expired"
                                   # (link.expire_after_hours is its older name, still read)

Relative paths are read from the folder of the node file. Every table and key, with its
type, default and meaning: exchange/config_schema*.py, shown as docs/configuration.md; a
key the schema does not know is refused (exchange/config_keys.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from exchange.config_http import HttpSettings
from exchange.calendar import DEFAULT_TIME_ZONE, WEEKDAY_NAMES, WorkingCalendar
from exchange.config_alerts import AlertSettings, alert_settings
from exchange.config_keys import refuse_unknown
from exchange.config_tls import TlsClient, check_tls_urls, tls_client
from exchange.errors import ConfigurationError
from exchange.large import INLINE_MAX_BYTES, MAX_PACKAGE_BYTES
from exchange.policy import PRESETS, VerificationPolicy
from exchange.upstream import UpstreamSettings

_NODE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_WORK_HOURS = re.compile(r"(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
DEFAULT_TTL_HOURS = 168.0


@dataclass(frozen=True)
class StoreSettings:
    kind: str
    path: Path | None = None
    dsn: str | None = None
    schema: str = "lienthong"
    pool_size: int = 4
    dedup_retention_days: int = 90
    instance: str = "main"  # this service instance's evidence chain (one per instance)
    checkpoint_every_s: float = 300.0  # how often the chain head is signed for the parent
    lease_s: float = 60.0  # postgres: an instance's hold on the rows it took to relay


@dataclass(frozen=True)
class TrustSettings:
    ca: Path
    directory: Path
    node_key: Path
    node_certs: Path
    crls: tuple[Path, ...] = ()
    directory_signer: str | None = None  # the node whose key signs directories (the root)


DEFAULT_AMQP_RATE = 50.0  # an agency login's submissions a second (docs/amqp-face.md)


@dataclass(frozen=True)
class Credential:
    """What one RabbitMQ login may do. RabbitMQ checks a message's ``user_id`` against the
    login that published it, so this is who is really calling (DESIGN §5)."""

    source: str = "amqp"  # the source, so the verification policy, of what it submits
    organs: frozenset[str] | None = None  # may send as and read for these; None: any
    trusted: bool = False  # may name the source itself (operators' replays, bridges)
    # submissions a second over AMQP, on average (bursts of twice that); None: unlimited
    rate_per_s: float | None = None

    def may_act_for(self, organ: str) -> bool:
        return self.organs is None or organ in self.organs


def _urls(r: _Reader, table: str, key: str, required: bool) -> tuple[str, ...]:
    """``table.key``: one amqp:// URL, or a non-empty list of them (a cluster's nodes)."""
    expected = "an amqp:// URL, or a list of them (a cluster's nodes)"
    value = r.get(table, key, object, expected, ... if required else None)
    if value is None:
        return ()
    urls = [value] if isinstance(value, str) else value
    if not (
        isinstance(urls, list)
        and urls
        and all(isinstance(u, str) and u.startswith(("amqp://", "amqps://")) for u in urls)
    ):
        raise r._fail(f"{table}.{key}", expected, value)
    return tuple(urls)


@dataclass(frozen=True)
class LinkSettings:
    parent_url: str | None = None  # the parent's broker; the child opens the link
    parent_urls: tuple[str, ...] = ()  # all its nodes, when it is a cluster (the first:
    # parent_url)
    max_bytes: int = 64 * 1024 * 1024  # each link lane refuses publishes past this
    # a copy that waits longer for its link fails; the same value as deadlines.ttl, which
    # is where the node takes it from (link.expire_after_hours is read as its older name)
    expire_after_hours: float = DEFAULT_TTL_HOURS
    # A link that dies without a word (a NAT mapping dropped, a peer gone) is noticed when
    # no frame came for about three heartbeats; the heartbeats also keep NAT mappings open.
    heartbeat_s: int = 15
    transfer_url: str | None = None  # the parent's HTTP face, for large packages' bytes
    transfer_token: str | None = field(default=None, repr=False)  # never logged
    tls: TlsClient | None = None  # AMQPS to the parent's broker (exchange/config_tls.py)
    # a parent: each package from a child must be published under that child's login (its
    # certificate's CN, with AMQPS and auth=external), checked by RabbitMQ as user_id
    verify_login: bool = False


@dataclass(frozen=True)
class DeadlineSettings:
    """When things are due: the working calendar for acknowledgements (Decree 30/2020: the
    same working day), and how long a copy may wait for its link before it fails."""

    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    ttl: timedelta = timedelta(hours=DEFAULT_TTL_HOURS)


@dataclass(frozen=True)
class NodeConfig:
    node_id: str
    parent: str | None
    amqp_url: str  # the first of amqp_urls
    prefetch: int
    publish_timeout_s: float
    quorum: bool
    store: StoreSettings
    trust: TrustSettings
    max_package_bytes: int
    max_attempts: int
    admission_workers: int
    intake_concurrency: int = 16
    link_concurrency: int = 8
    inline_max_bytes: int = INLINE_MAX_BYTES  # above it: a claim check (exchange/large.py)
    directory_check_s: float = 30.0  # how often the root looks for a newer signed directory
    sources: Mapping[str, VerificationPolicy] = field(default_factory=dict)
    amqp_urls: tuple[str, ...] = ()  # a cluster's nodes, tried in turn (rabbitmq.url a list)
    source_file: Path | None = None
    link: LinkSettings = field(default_factory=LinkSettings)
    credentials: Mapping[str, Credential] = field(default_factory=dict)
    deadlines: DeadlineSettings = field(default_factory=DeadlineSettings)
    http: HttpSettings | None = None  # the REST API and the SDK facade (exchange/config_http)
    push: frozenset[str] = frozenset()  # agencies whose mail is pushed to their AMQP queue
    upstreams: tuple[UpstreamSettings, ...] = ()  # axes bridged as a client (config_upstream)
    alerts: AlertSettings | None = None  # where alerts are sent, if anywhere (config_alerts)
    amqp_tls: TlsClient | None = None  # AMQPS to this node's broker (exchange/config_tls.py)
    wire_version: int = 1  # the envelope version this node writes (docs/wire.md, "Versions")

    @property
    def broker_urls(self) -> tuple[str, ...]:
        """This node's broker: one URL, or its cluster's nodes, tried in turn."""
        return self.amqp_urls or (self.amqp_url,)

    @property
    def parent_broker_urls(self) -> tuple[str, ...]:
        """Where the link to the parent goes (by default, this node's own broker)."""
        if self.link.parent_urls:
            return self.link.parent_urls
        return (self.link.parent_url,) if self.link.parent_url else self.broker_urls

    def policy_for(self, source: str) -> VerificationPolicy:
        """The policy of a source; unknown sources get ``strict``."""
        return self.sources.get(source, PRESETS["strict"])


def default_admission_workers() -> int:
    """One fewer than the cores this process may use, at most 4: the node's own process
    (intake, store, relay, broker connections) keeps one busy. On 2 cores, 1 worker
    measured 0.73x the naive forwarder against 0.65x with 2 (docs/benchmarks.md, Intake);
    more than 4 was not measured, and each worker holds the directory and trust store."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return min(4, max(1, (usable or os.cpu_count() or 2) - 1))


def _secret(r: _Reader, table: str, key: str, base: Path) -> str | None:
    """A secret kept in a file the node file names (never in the node file itself)."""
    name: str | None = r.get(table, key, str, "a file name", None)
    if name is None:
        return None
    path = base / name
    try:
        found = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(
            f"{r.source}: key '{table}.{key}': cannot read {path}: {exc.strerror}"
        ) from exc
    if not found:
        raise ConfigurationError(f"{r.source}: key '{table}.{key}': {path} is empty")
    return str(found)


class _Reader:
    def __init__(self, data: Mapping[str, Any], source: str, base: Path) -> None:
        self.data = data
        self.source = source
        self.base = base

    def _fail(self, key: str, expected: str, found: object) -> ConfigurationError:
        shown = "nothing" if found is None else f"{type(found).__name__} {found!r}"
        return ConfigurationError(f"{self.source}: key '{key}': expected {expected}, found {shown}")

    def table(self, key: str, *, required: bool = True) -> Mapping[str, Any]:
        value = self.data.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "a table", value)
        return value

    def get(self, table: str, key: str, kind: type, expected: str, default: Any = ...) -> Any:
        section = self.table(table, required=default is ...)
        value = section.get(key, default)
        if value is ...:
            raise self._fail(f"{table}.{key}", expected, None)
        if value is None and default is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self._fail(f"{table}.{key}", expected, value)
        return value

    def seconds(self, table: str, key: str, default: float, *, unit: str = "seconds") -> float:
        expected = f"a positive number of {unit}"
        value: float = self.get(table, key, float, expected, default)
        if value <= 0:
            raise self._fail(f"{table}.{key}", expected, value)
        return value

    def count(self, table: str, key: str, default: Any = ...) -> int:
        value: int = self.get(table, key, int, "a whole number, 0 or more", default)
        if value < 0:
            raise self._fail(f"{table}.{key}", "a whole number, 0 or more", value)
        return value

    def positive(self, table: str, key: str, default: Any = ...) -> int:
        value: int = self.get(table, key, int, "a positive whole number", default)
        if value <= 0:
            raise self._fail(f"{table}.{key}", "a positive whole number", value)
        return value

    def path(self, table: str, key: str) -> Path:
        value: str = self.get(table, key, str, "a file or folder path")
        path = Path(value)
        return path if path.is_absolute() else self.base / path


def _dates(r: _Reader, key: str) -> frozenset[date]:
    """A list of days, as ISO strings ("2027-02-05") or TOML dates (2027-02-05)."""
    expected = "a list of dates, YYYY-MM-DD"
    values = r.get("deadlines", key, list, expected, [])
    days: set[date] = set()
    for value in values:
        day = _day(value)
        if day is None:
            raise r._fail(f"deadlines.{key}", expected, value)
        days.add(day)
    return frozenset(days)


def _day(value: object) -> date | None:
    if isinstance(value, date) and not isinstance(value, datetime):  # not a TOML date-time
        return value
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:  # 2027-02-30
            return None
    return None


def _work_hours(r: _Reader) -> tuple[time, time]:
    expected = "local opening and closing times, 'HH:MM-HH:MM'"
    value: str = r.get("deadlines", "work_hours", str, expected, "07:30-17:00")
    match = _WORK_HOURS.fullmatch(value.strip())
    if match is None:
        raise r._fail("deadlines.work_hours", expected, value)
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    try:
        opens, closes = time(h1, m1), time(h2, m2)
    except ValueError:  # 25:00, 07:60
        raise r._fail("deadlines.work_hours", expected, value) from None
    if closes <= opens:
        raise r._fail("deadlines.work_hours", "a closing time after the opening time", value)
    return opens, closes


def _deadlines(r: _Reader) -> DeadlineSettings:
    zone_name: str = r.get(
        "deadlines", "time_zone", str, "an IANA time zone name", DEFAULT_TIME_ZONE
    )
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # unknown, a path, a folder
        raise r._fail(
            "deadlines.time_zone", "a known IANA time zone such as 'Asia/Ho_Chi_Minh'", zone_name
        ) from None
    expected_days = f"a non-empty list of weekdays from {', '.join(WEEKDAY_NAMES)}"
    names = r.get("deadlines", "work_days", list, expected_days, list(WEEKDAY_NAMES[:5]))
    if not names or not all(isinstance(n, str) and n.lower() in WEEKDAY_NAMES for n in names):
        raise r._fail("deadlines.work_days", expected_days, names)
    opens, closes = _work_hours(r)
    holidays = _dates(r, "holidays")
    saturdays = _dates(r, "working_saturdays")
    for day in sorted(saturdays):
        if day.weekday() != WEEKDAY_NAMES.index("sat"):
            raise r._fail("deadlines.working_saturdays", "Saturdays", day.isoformat())
    both = sorted(d.isoformat() for d in holidays & saturdays)
    if both:
        raise ConfigurationError(
            f"{r.source}: key 'deadlines.working_saturdays': {', '.join(both)} also listed "
            "in 'deadlines.holidays'; a day is worked or off, not both"
        )
    calendar = WorkingCalendar(
        time_zone=zone,
        work_days=frozenset(WEEKDAY_NAMES.index(n.lower()) for n in names),
        opens=opens,
        closes=closes,
        holidays=holidays,
        extra_working_days=saturdays,
    )
    return DeadlineSettings(calendar=calendar, ttl=timedelta(hours=_ttl_hours(r)))


def _ttl_hours(r: _Reader) -> float:
    """deadlines.ttl_hours, or link.expire_after_hours (its older name); not two values."""
    ttl = r.seconds("deadlines", "ttl_hours", DEFAULT_TTL_HOURS, unit="hours")
    old = r.seconds("link", "expire_after_hours", DEFAULT_TTL_HOURS, unit="hours")
    given_ttl = "ttl_hours" in r.table("deadlines", required=False)
    given_old = "expire_after_hours" in r.table("link", required=False)
    if given_ttl and given_old and ttl != old:
        raise ConfigurationError(
            f"{r.source}: key 'deadlines.ttl_hours': {ttl:g} hours, but "
            f"'link.expire_after_hours' (its older name) says {old:g}; keep one"
        )
    return ttl if given_ttl else old


def node_config_from_mapping(data: Mapping[str, Any], source: str, base: Path) -> NodeConfig:
    refuse_unknown(data, source)  # every key the schema knows, or one clear message
    r = _Reader(data, source, base)
    node_id: str = r.get("node", "id", str, "a node id of letters, digits, '-', '_' and '.'")
    if not _NODE_ID.fullmatch(node_id):
        raise ConfigurationError(
            f"{source}: key 'node.id': expected letters, digits, '-', '_' and '.', "
            f"found {node_id!r}"
        )
    parent = r.get("node", "parent", str, "a node id", None)
    store_kind: str = r.get("store", "kind", str, "'sqlite' or 'postgres'")
    if store_kind not in ("sqlite", "postgres"):
        raise ConfigurationError(
            f"{source}: key 'store.kind': expected 'sqlite' or 'postgres', found {store_kind!r}"
        )
    store = StoreSettings(
        kind=store_kind,
        path=r.path("store", "path") if store_kind == "sqlite" else None,
        dsn=r.get("store", "dsn", str, "a PostgreSQL connection string")
        if store_kind == "postgres"
        else None,
        schema=r.get("store", "schema", str, "a schema name", "lienthong"),
        pool_size=r.positive("store", "pool_size", 4),
        dedup_retention_days=r.positive("store", "dedup_retention_days", 90),
        instance=r.get(
            "store", "instance", str, "a name for this service instance's evidence chain", "main"
        ),
        checkpoint_every_s=r.seconds("store", "checkpoint_every_s", 300.0),
        lease_s=r.seconds("store", "lease_s", 60.0),
    )
    crls = r.get("trust", "crls", list, "a list of CRL file paths", [])
    trust = TrustSettings(
        ca=r.path("trust", "ca"),
        directory=r.path("trust", "directory"),
        node_key=r.path("trust", "node_key"),
        node_certs=r.path("trust", "node_certs"),
        crls=tuple(Path(c) if Path(c).is_absolute() else base / c for c in crls),
        directory_signer=r.get("trust", "directory_signer", str, "a node id", None),
    )
    sources: dict[str, VerificationPolicy] = {}
    for name, table in r.table("sources", required=False).items():
        policy = table.get("policy") if isinstance(table, Mapping) else None
        if policy not in PRESETS:
            raise ConfigurationError(
                f"{source}: key 'sources.{name}.policy': expected one of "
                f"{', '.join(sorted(PRESETS))}, found {policy!r}"
            )
        sources[name] = PRESETS[policy]
    credentials: dict[str, Credential] = {}
    for user, table in r.table("credentials", required=False).items():
        where = f"{source}: key 'credentials.{user}"
        if not isinstance(table, Mapping):
            raise ConfigurationError(f"{where}': expected a table")
        cred_source = table.get("source", "amqp")
        if not isinstance(cred_source, str) or (
            cred_source != "amqp" and cred_source not in sources
        ):
            raise ConfigurationError(
                f"{where}.source': expected 'amqp' or a name from [sources], found {cred_source!r}"
            )
        organs = table.get("organs")
        if organs is not None and not (
            isinstance(organs, list) and all(isinstance(o, str) for o in organs)
        ):
            raise ConfigurationError(f"{where}.organs': expected a list of OrganIds")
        trusted = table.get("trusted", False)
        if not isinstance(trusted, bool):
            raise ConfigurationError(f"{where}.trusted': expected true or false")
        rate = table.get("rate_per_s", None if trusted else DEFAULT_AMQP_RATE)
        if rate is not None and (
            not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0
        ):
            raise ConfigurationError(f"{where}.rate_per_s': expected a positive number")
        credentials[user] = Credential(
            cred_source,
            frozenset(organs) if organs is not None else None,
            trusted,
            float(rate) if rate is not None else None,
        )
    deadlines = _deadlines(r)
    inline_max_bytes = r.positive("limits", "inline_max_bytes", INLINE_MAX_BYTES)
    max_package_bytes = r.positive("limits", "max_package_bytes", MAX_PACKAGE_BYTES)
    if max_package_bytes < inline_max_bytes:
        raise ConfigurationError(
            f"{source}: key 'limits.max_package_bytes' ({max_package_bytes}) is below "
            f"'limits.inline_max_bytes' ({inline_max_bytes})"
        )
    upstreams = _upstreams(data, source, base, inline_max_bytes)  # fetched into memory
    amqp_urls = _urls(r, "rabbitmq", "url", required=True)
    parent_urls = _urls(r, "link", "parent_url", required=False)
    amqp_tls = tls_client(r.table("rabbitmq").get("tls"), f"{source}: key 'rabbitmq.tls", base)
    check_tls_urls(amqp_urls, amqp_tls, source, "rabbitmq")
    link_tls = tls_client(
        r.table("link", required=False).get("tls"),
        f"{source}: key 'link.tls",
        base,
        default_peer=parent,
    )
    if parent_urls:
        check_tls_urls(parent_urls, link_tls, source, "link")
    elif link_tls is None:
        link_tls = amqp_tls  # the link goes to this node's own broker
    return NodeConfig(
        node_id=node_id,
        parent=parent,
        amqp_url=amqp_urls[0],
        amqp_urls=amqp_urls,
        prefetch=r.positive("rabbitmq", "prefetch", 32),
        publish_timeout_s=r.seconds("rabbitmq", "publish_timeout_s", 10.0),
        quorum=r.get("rabbitmq", "quorum", bool, "true or false", False),
        store=store,
        trust=trust,
        max_package_bytes=max_package_bytes,
        inline_max_bytes=inline_max_bytes,
        max_attempts=r.positive("limits", "max_attempts", 5),
        admission_workers=r.count("limits", "admission_workers", default_admission_workers()),
        intake_concurrency=r.positive("limits", "intake_concurrency", 16),
        link_concurrency=r.positive("limits", "link_concurrency", 8),
        directory_check_s=r.seconds("trust", "directory_check_s", 30.0),
        sources=sources,  # an upstream's policy: its bridge gives it to the node
        source_file=Path(source),
        credentials=credentials,
        link=LinkSettings(
            parent_url=parent_urls[0] if parent_urls else None,
            parent_urls=parent_urls,
            max_bytes=r.positive("link", "max_bytes", 64 * 1024 * 1024),
            expire_after_hours=deadlines.ttl / timedelta(hours=1),
            heartbeat_s=r.positive("link", "heartbeat_s", 15),
            transfer_url=r.get("link", "transfer_url", str, "an http(s):// URL", None),
            transfer_token=_secret(r, "link", "transfer_token_file", base),
            tls=link_tls,
            verify_login=r.get("link", "verify_login", bool, "true or false", False),
        ),
        deadlines=deadlines,
        http=_http(data, source, base, sources),
        push=_push(data, source),
        upstreams=upstreams,
        alerts=alert_settings(data.get("alerts"), source, base),
        amqp_tls=amqp_tls,
        wire_version=_wire_version(r),
    )


def _wire_version(r: _Reader) -> int:
    from exchange.envelope import READS, WRITES

    version: int = r.get("node", "wire_version", int, "an envelope version", WRITES)
    if version not in READS:
        raise r._fail("node.wire_version", f"one of {', '.join(map(str, READS))}", version)
    return version


def _http(
    data: Mapping[str, Any], source: str, base: Path, sources: Mapping[str, Any]
) -> HttpSettings | None:
    from exchange.config_http import http_settings  # it builds on Credential, defined here

    table = data.get("http")
    if table is not None and not isinstance(table, Mapping):
        raise ConfigurationError(f"{source}: key 'http': expected a table")
    return http_settings(table, source, base, sources)


def _upstreams(
    data: Mapping[str, Any], source: str, base: Path, max_bytes: int
) -> tuple[UpstreamSettings, ...]:
    from exchange.config_upstream import upstream_settings

    return upstream_settings(data.get("upstreams"), source, base, max_bytes)


def _push(data: Mapping[str, Any], source: str) -> frozenset[str]:
    """[delivery] push = [OrganIds]: mail pushed to each one's AMQP queue (docs/amqp-face.md)."""
    table = data.get("delivery", {})
    if not isinstance(table, Mapping):
        raise ConfigurationError(f"{source}: key 'delivery': expected a table")
    push = table.get("push", [])
    if not isinstance(push, list) or not all(isinstance(o, str) for o in push):
        raise ConfigurationError(f"{source}: key 'delivery.push': expected a list of OrganIds")
    return frozenset(push)
