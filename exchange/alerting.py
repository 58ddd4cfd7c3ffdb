"""Alerts for nodes without Prometheus: the conditions of deploy/prometheus/lienthong-alerts.yml
judged from a /status snapshot (the shape of the operator-surface contract), with no I/O.

``evaluate`` is called again and again with the same ``AlertMemory``: the memory says since
when each condition has held (an alert with a wait, like a rule's ``for``, fires once it has
held that long) and keeps each link's recent backlog (the rule's ``deriv`` and ``offset``).
Where the snapshot itself says since when something holds (a link's ``since``, the oldest
dead letter, the earliest overdue due time), that time counts, so a fresh memory does not
wait again for what the node already knows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

LINK_DOWN = "LienthongLinkDown"
BACKLOG_GROWING = "LienthongBacklogGrowing"
DEAD_LETTERS = "LienthongDeadLetters"
OVERDUE = "LienthongOverdueAcknowledgements"
CERT_EXPIRING = "LienthongCertificateExpiring"
CERT_EXPIRING_SOON = "LienthongCertificateExpiringSoon"
CLOCK_SKEW = "LienthongClockSkew"
DIRECTORY_STALE = "LienthongDirectoryStale"
UPSTREAM_DOWN = "LienthongUpstreamDown"

SEVERITIES: Mapping[str, str] = {
    LINK_DOWN: "critical",
    BACKLOG_GROWING: "warning",
    DEAD_LETTERS: "warning",
    OVERDUE: "warning",
    CERT_EXPIRING: "warning",
    CERT_EXPIRING_SOON: "critical",
    CLOCK_SKEW: "warning",
    DIRECTORY_STALE: "warning",
    UPSTREAM_DOWN: "critical",
}

BACKLOG_SPACING_S = 10.0  # backlog points closer than this to the last one are not kept
BACKLOG_LOOKBACK_S = 300.0  # the value "a window ago" is at most this much older (Prometheus)
BACKLOG_POINTS = 1000  # per link, whatever the window and spacing


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    summary: str  # English, for /status and the console
    since: datetime  # when its condition began to hold
    subject: str = ""  # the link, upstream or certificate it is about; "" for the node
    summary_vi: str = ""  # the same in Vietnamese, for notifications

    @property
    def key(self) -> tuple[str, str]:
        """One alert among many: a name may fire once per link, upstream or certificate."""
        return (self.name, self.subject)

    def as_status(self) -> dict[str, str]:
        """An entry of /status ``alerts``."""
        return {"name": self.name, "severity": self.severity, "summary": self.summary}


@dataclass(frozen=True)
class Thresholds:
    link_down_after_s: float = 300.0
    backlog_min: int = 100
    backlog_growth: int = 50
    backlog_window_s: float = 900.0
    dead_letters_after_s: float = 60.0
    overdue_after_s: float = 3600.0
    cert_warn_days: float = 30.0
    cert_critical_days: float = 7.0
    clock_skew_s: float = 60.0
    clock_skew_for_s: float = 600.0
    directory_stale_s: float = 7 * 24 * 3600.0
    upstream_down_after_s: float = 600.0


@dataclass
class AlertMemory:
    """What ``evaluate`` remembers between calls; one per node, owned by its caller."""

    began: dict[tuple[str, str], datetime] = field(default_factory=dict)
    backlog: dict[str, deque[tuple[datetime, float]]] = field(default_factory=dict)

    def held_since(
        self, key: tuple[str, str], holds: bool, now: datetime, known: datetime | None = None
    ) -> datetime | None:
        """Since when the condition ``key`` has held, or None when it does not hold now."""
        if not holds:
            self.began.pop(key, None)
            return None
        began = self.began.get(key, now)
        if known is not None:
            began = min(began, known, now)
        self.began[key] = began
        return began

    def backlog_points(
        self, link: str, now: datetime, total: float, window_s: float
    ) -> tuple[list[tuple[datetime, float]], float | None]:
        """Record a link's backlog; return the points inside the window (the current one
        last) and the value a window ago, if one was seen."""
        points = self.backlog.setdefault(link, deque(maxlen=BACKLOG_POINTS))
        if not points or (now - points[-1][0]).total_seconds() >= BACKLOG_SPACING_S:
            points.append((now, total))
        start = now - timedelta(seconds=window_s)
        while len(points) > 1 and points[1][0] <= start:
            points.popleft()  # keep one point at or before the window's start: the baseline
        baseline = None
        if points and points[0][0] <= start:
            age = (start - points[0][0]).total_seconds()
            baseline = points[0][1] if age <= BACKLOG_LOOKBACK_S else None
        inside = [p for p in points if p[0] > start and p[0] < now] + [(now, total)]
        return inside, baseline

    def forget_links_but(self, links: Iterable[str]) -> None:
        keep = set(links)
        for link in [name for name in self.backlog if name not in keep]:
            del self.backlog[link]


def evaluate(
    status: Mapping[str, Any],
    *,
    now: datetime,
    memory: AlertMemory,
    thresholds: Thresholds = Thresholds(),  # frozen: one shared default is safe
) -> list[Alert]:
    """The alerts that fire now, from one /status snapshot; ``now`` is timezone-aware."""
    judge = _Judge(now, memory, thresholds)
    links = [link for link in _items(status.get("links")) if _text(link.get("neighbour"))]
    for link in links:
        judge.link(link)
    memory.forget_links_but(str(link["neighbour"]) for link in links)
    for upstream in _items(status.get("upstreams")):
        judge.upstream(upstream)
    judge.dead_letters(_section(status, "dead_letters"))
    judge.overdue(_section(status, "overdue"))
    for (kind, subject), days in _certificates(status, now).items():
        judge.certificate(kind, subject, days)
    judge.clock(_section(status, "clock"))
    judge.directory(_section(status, "directory"))
    return judge.fired


class _Judge:
    """One round of ``evaluate``: each condition checked against the memory."""

    def __init__(self, now: datetime, memory: AlertMemory, thresholds: Thresholds) -> None:
        self.now = now
        self.memory = memory
        self.t = thresholds
        self.fired: list[Alert] = []

    def _since(
        self, name: str, subject: str, holds: bool, wait_s: float, known: datetime | None = None
    ) -> datetime | None:
        """When the condition began, if it has held for ``wait_s``; else None."""
        began = self.memory.held_since((name, subject), holds, self.now, known)
        if began is None or (self.now - began).total_seconds() < wait_s:
            return None
        return began

    def _fire(self, name: str, subject: str, since: datetime, en: str, vi: str) -> None:
        self.fired.append(Alert(name, SEVERITIES[name], en, since, subject, vi))

    def link(self, link: Mapping[str, Any]) -> None:
        neighbour = str(link["neighbour"])
        down = link.get("state") == "down"
        known = _when(link.get("since"))
        since = self._since(LINK_DOWN, neighbour, down, self.t.link_down_after_s, known)
        if since is not None:
            role = _text(link.get("role"))
            role_vi = {"parent": "nút cha", "child": "nút con"}.get(role, role)
            self._fire(
                LINK_DOWN,
                neighbour,
                since,
                f"link to {neighbour} ({role}) down since {_at(since)}",
                f"mất liên kết tới {neighbour} ({role_vi}) từ {_at(since)}",
            )
        self.backlog(neighbour, _backlog_total(link))

    def backlog(self, neighbour: str, total: float) -> None:
        t = self.t
        inside, baseline = self.memory.backlog_points(
            neighbour, self.now, total, t.backlog_window_s
        )
        rising = total > t.backlog_min and _slope(inside) > 0
        grown = baseline is not None and total - baseline >= t.backlog_growth
        since = self._since(BACKLOG_GROWING, neighbour, rising or grown, 0.0)
        if since is None:
            return
        minutes = f"{t.backlog_window_s / 60:.0f}"
        change = f"{total - baseline:+.0f}" if baseline is not None else ""
        self._fire(
            BACKLOG_GROWING,
            neighbour,
            since,
            f"backlog to {neighbour} growing: {total:.0f} waiting"
            + (f", {change} in {minutes} min" if change else ""),
            f"hàng đợi tới {neighbour} đang tăng: {total:.0f} gói chờ"
            + (f", {change} trong {minutes} phút" if change else ""),
        )

    def upstream(self, upstream: Mapping[str, Any]) -> None:
        name = _text(upstream.get("name"))
        down = bool(name) and upstream.get("state") == "down"
        known = _when(upstream.get("since"))
        since = self._since(UPSTREAM_DOWN, name, down, self.t.upstream_down_after_s, known)
        if since is not None:
            self._fire(
                UPSTREAM_DOWN,
                name,
                since,
                f"upstream {name} down since {_at(since)}",
                f"mất kết nối tới trục {name} từ {_at(since)}",
            )

    def dead_letters(self, dead: Mapping[str, Any]) -> None:
        count = _number(dead.get("count")) or 0
        # the oldest dead letter still there has been there all along: count > 0 since then
        oldest = _earliest(item.get("dead_at") for item in _items(dead.get("items")))
        since = self._since(DEAD_LETTERS, "", count > 0, self.t.dead_letters_after_s, oldest)
        if since is not None:
            self._fire(
                DEAD_LETTERS,
                "",
                since,
                f"{count:.0f} dead letter(s) wait for an operator",
                f"{count:.0f} gói bị loại (dead letter) chờ người vận hành xử lý",
            )

    def overdue(self, overdue: Mapping[str, Any]) -> None:
        count = _number(overdue.get("count")) or 0
        earliest = _earliest(item.get("due") for item in _items(overdue.get("items")))
        since = self._since(OVERDUE, "", count > 0, self.t.overdue_after_s, earliest)
        if since is not None:
            self._fire(
                OVERDUE,
                "",
                since,
                f"{count:.0f} delivered document(s) not acknowledged by their agency in time",
                f"{count:.0f} văn bản đã chuyển nhưng cơ quan nhận chưa xác nhận đúng hạn",
            )

    def certificate(self, kind: str, subject: str, days: float) -> None:
        limits = (
            (CERT_EXPIRING, self.t.cert_warn_days),
            (CERT_EXPIRING_SOON, self.t.cert_critical_days),
        )
        for name, limit in limits:
            since = self._since(name, subject, days < limit, 0.0)
            if since is not None:
                en, vi = _expiry(days)
                self._fire(
                    name,
                    subject,
                    since,
                    f"{kind} certificate {subject} {en}",
                    f"chứng thư số {subject} ({_KIND_VI.get(kind, kind)}) {vi}",
                )

    def clock(self, clock: Mapping[str, Any]) -> None:
        offset = _number(clock.get("offset_s"))
        skewed = offset is not None and abs(offset) > self.t.clock_skew_s
        since = self._since(CLOCK_SKEW, "", skewed, self.t.clock_skew_for_s)
        if since is not None and offset is not None:
            self._fire(
                CLOCK_SKEW,
                "",
                since,
                f"clock off by {offset:+.0f} s since {_at(since)}",
                f"đồng hồ lệch {offset:+.0f} giây từ {_at(since)}",
            )

    def directory(self, directory: Mapping[str, Any]) -> None:
        age = _number(directory.get("age_s"))
        issued = _when(directory.get("issued_at"))
        if age is None and issued is not None:
            age = (self.now - issued).total_seconds()
        stale = age is not None and age > self.t.directory_stale_s
        since = self._since(DIRECTORY_STALE, "", stale, 0.0)
        if since is not None and age is not None:
            version = directory.get("version")
            self._fire(
                DIRECTORY_STALE,
                "",
                since,
                f"directory version {version} is {age / 86400:.1f} days old",
                f"danh bạ phiên bản {version} đã cũ {age / 86400:.1f} ngày",
            )


def _backlog_total(link: Mapping[str, Any]) -> float:
    """backlog_total, or the sum over directions and lanes where it is missing."""
    total = _number(link.get("backlog_total"))
    if total is not None:
        return total
    lanes = _section(link, "backlog")
    return sum(
        _number(v) or 0 for direction in ("out", "in") for v in _section(lanes, direction).values()
    )


_KIND_VI = {"node": "của nút", "agency": "của cơ quan"}


def _expiry(days: float) -> tuple[str, str]:
    if days < 0:
        return f"expired {-days:.0f} day(s) ago", f"đã hết hạn {-days:.0f} ngày"
    return f"expires in {days:.0f} day(s)", f"hết hạn sau {days:.0f} ngày"


def _certificates(status: Mapping[str, Any], now: datetime) -> dict[tuple[str, str], float]:
    """Days left per (kind, subject); of two certificates of one subject (a renewal rolled
    out beside the old one), the one that lasts longer counts."""
    days: dict[tuple[str, str], float] = {}
    for cert in _items(status.get("certificates")):
        subject = _text(cert.get("subject"))
        left = _number(cert.get("days_left"))
        if left is None:
            not_after = _when(cert.get("not_after"))
            left = (not_after - now) / timedelta(days=1) if not_after is not None else None
        if not subject or left is None:
            continue
        key = (_text(cert.get("kind")) or "node", subject)
        days[key] = max(left, days.get(key, left))
    return days


def _slope(points: list[tuple[datetime, float]]) -> float:
    """Least-squares slope per second, as Prometheus's deriv(); 0 with fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    t0 = points[0][0]
    xs = [(at - t0).total_seconds() for at, _ in points]
    ys = [value for _, value in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


def _items(value: object) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _earliest(values: Iterable[object]) -> datetime | None:
    times = [when for when in map(_when, values) if when is not None]
    return min(times) if times else None


def _at(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="minutes")
