"""Prometheus metrics of one node (docs/metrics.md; names fixed in the operator contract).

``NodeMetrics`` is the node's observer (exchange/observe.py): counters and histograms move
as packages flow. The gauges are not kept up to date by the node: they are read from the
/status snapshot when Prometheus scrapes (``update_from_status``, then ``render``), so they
say what /status says. Each node has its own ``CollectorRegistry``: the sandbox runs
several nodes in one process, and each node's /metrics shows its own series only.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# a submission is judged and committed in milliseconds; a slow CRL or PDF check takes
# seconds; admission gives up at 30 s (node.admission_timeout_s)
ADMISSION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# from acceptance at the origin to a mailbox here: a second on one node, minutes across
# the tree, hours or days behind a link that was down (a copy expires after 7 days)
HOUR, DAY = 3600.0, 86400.0
DELIVERY_BUCKETS = (
    *(0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0),
    *(HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 3 * DAY, 7 * DAY),
)

# name -> (help, labels besides node)
GAUGES: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "lienthong_link_up": (
        "1 when the link to this neighbour is up, 0 when down (not exported while unknown)",
        ("neighbour", "role"),
    ),
    "lienthong_link_backlog": (
        "Package copies waiting on the link to this neighbour, summed over lanes",
        ("neighbour", "direction"),
    ),
    "lienthong_upstream_up": (
        "1 when the upstream axis answers, 0 when down (not exported while unknown)",
        ("upstream",),
    ),
    "lienthong_upstream_backlog": ("Package copies waiting to go to the upstream", ("upstream",)),
    "lienthong_queue_depth": ("Messages ready in this node's queue", ("queue",)),
    "lienthong_dead_letters": ("Dead letters held for an operator", ()),
    "lienthong_quarantined": ("Packages held in quarantine for an operator", ()),
    "lienthong_overdue_acknowledgements": (
        "Delivered packages whose agency has not acknowledged them in time",
        (),
    ),
    "lienthong_mailbox_pending": ("Copies in this node's mailboxes not yet fetched", ()),
    "lienthong_certificate_days_left": (
        "Days until the certificate expires",
        ("subject", "kind"),
    ),
    "lienthong_clock_offset_seconds": ("This node's clock minus its reference clock", ()),
    "lienthong_directory_age_seconds": ("Age of the signed directory in use", ()),
    "lienthong_draining": ("1 while the node is draining, else 0", ()),
    "lienthong_store_up": ("1 when the store answers its health check, else 0", ()),
    "lienthong_broker_up": ("1 when the broker answers its health check, else 0", ()),
}

StatusGauges = dict[str, dict[tuple[str, ...], float]]


class NodeMetrics:
    """The series of one node, in its own registry; an ``Observer``."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.registry = CollectorRegistry()
        registry, node = self.registry, ("node",)
        self._admitted = Counter(
            "lienthong_packages_admitted",
            "Submissions accepted at intake, by the source that judged them",
            [*node, "source"],
            registry=registry,
        )
        self._refused = Counter(
            "lienthong_packages_refused",
            "Packages this node would not take (refused, conflict, dead-lettered), by code",
            [*node, "code"],
            registry=registry,
        )
        self._routed = Counter(
            "lienthong_packages_routed",
            "Copies routed on: to a neighbour node, a mailbox here, or upstream:<name>",
            [*node, "next_hop"],
            registry=registry,
        )
        self._delivered = Counter(
            "lienthong_packages_delivered",
            "Copies written into this node's mailboxes",
            node,
            registry=registry,
        ).labels(node_id)
        self._fetched = Counter(
            "lienthong_packages_fetched",
            "Copies acknowledged by their agency",
            node,
            registry=registry,
        ).labels(node_id)
        self._admission = Histogram(
            "lienthong_admission_seconds",
            "Time from taking a package to its answer here, admitted or refused",
            node,
            buckets=ADMISSION_BUCKETS,
            registry=registry,
        ).labels(node_id)
        self._delivery = Histogram(
            "lienthong_delivery_seconds",
            "Time from acceptance at the origin node to the mailbox here, per copy",
            node,
            buckets=DELIVERY_BUCKETS,
            registry=registry,
        ).labels(node_id)
        self._status = _StatusCollector(node_id)
        registry.register(self._status)

    # --- Observer (exchange/observe.py) ---------------------------------------------------

    def admitted(self, source: str, seconds: float) -> None:
        self._admitted.labels(self.node_id, source).inc()
        self._admission.observe(seconds)

    def refused(self, code: str, seconds: float) -> None:
        self._refused.labels(self.node_id, code).inc()
        self._admission.observe(seconds)

    def routed(self, next_hop: str, count: int = 1) -> None:
        self._routed.labels(self.node_id, next_hop).inc(count)

    def delivered(self, count: int, latency_s: float | None) -> None:
        self._delivered.inc(count)
        if latency_s is not None:
            for _ in range(count):
                self._delivery.observe(latency_s)

    def fetched(self, count: int) -> None:
        self._fetched.inc(count)

    # --- scrape ---------------------------------------------------------------------------

    def update_from_status(self, status: Mapping[str, Any]) -> None:
        """Set every gauge from a /status snapshot: what it no longer lists (a link that
        vanished, a certificate replaced) is no longer exported."""
        self._status.gauges = status_gauges(status)

    def render(self) -> tuple[bytes, str]:
        """The body of GET /metrics, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StatusCollector(Collector):
    """The gauges of the last /status snapshot, exactly those, at each collect."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.gauges: StatusGauges = {}

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, labels) in GAUGES.items():
            family = GaugeMetricFamily(name, documentation, labels=("node", *labels))
            for values, value in sorted(self.gauges.get(name, {}).items()):
                family.add_metric((self.node_id, *values), value)
            yield family


def status_gauges(status: Mapping[str, Any]) -> StatusGauges:
    """Gauge values of a /status snapshot (its shape: the operator contract): for each
    gauge, its label values (besides node) -> value. Parts missing, null or of the wrong
    type are left out, never guessed."""
    out: StatusGauges = {name: {} for name in GAUGES}

    def put(name: str, labels: Sequence[object], value: object) -> None:
        number = _number(value)
        if number is not None:
            out[name][tuple(str(v) for v in labels)] = number

    for link in _items(status.get("links")):
        neighbour = link.get("neighbour")
        if not isinstance(neighbour, str):
            continue
        put("lienthong_link_up", (neighbour, link.get("role", "")), _up(link.get("state")))
        backlog = link.get("backlog")
        for direction in ("out", "in"):
            lanes = backlog.get(direction) if isinstance(backlog, Mapping) else None
            if isinstance(lanes, Mapping):
                counts = [_number(n) for n in lanes.values()]
                total = sum(n for n in counts if n is not None)
                put("lienthong_link_backlog", (neighbour, direction), total)
    for upstream in _items(status.get("upstreams")):
        name = upstream.get("name")
        if isinstance(name, str):
            put("lienthong_upstream_up", (name,), _up(upstream.get("state")))
            put("lienthong_upstream_backlog", (name,), upstream.get("backlog_total"))
    for queue in _items(status.get("queues")):
        if isinstance(queue.get("name"), str):
            put("lienthong_queue_depth", (queue["name"],), queue.get("messages"))
    put("lienthong_dead_letters", (), _field(status, "dead_letters", "count"))
    put("lienthong_quarantined", (), _field(status, "quarantine", "count"))
    put("lienthong_overdue_acknowledgements", (), _field(status, "overdue", "count"))
    put("lienthong_mailbox_pending", (), _field(status, "mailboxes", "pending_total"))
    for cert in _items(status.get("certificates")):
        if isinstance(cert.get("subject"), str):
            put(
                "lienthong_certificate_days_left",
                (cert["subject"], cert.get("kind", "")),
                cert.get("days_left"),
            )
    put("lienthong_clock_offset_seconds", (), _field(status, "clock", "offset_s"))
    put("lienthong_directory_age_seconds", (), _field(status, "directory", "age_s"))
    if "drain" in status:
        put("lienthong_draining", (), 0 if status["drain"] is None else 1)
    put("lienthong_store_up", (), _ok(_field(status, "health", "store")))
    put("lienthong_broker_up", (), _ok(_field(status, "health", "broker")))
    return out


def _items(value: object) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _field(status: Mapping[str, Any], part: str, key: str) -> object:
    found = status.get(part)
    return found.get(key) if isinstance(found, Mapping) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _up(state: object) -> int | None:
    """up -> 1, down -> 0; unknown (or anything else) is not exported."""
    return {"up": 1, "down": 0}.get(state) if isinstance(state, str) else None


def _ok(check: object) -> bool | None:
    if not isinstance(check, Mapping) or not isinstance(check.get("ok"), bool):
        return None
    return bool(check["ok"])
