"""exchange/alerting.py: the alert rules' conditions judged from /status snapshots, for
nodes without Prometheus. The link scenario is the one the promtool tests play
(deploy/prometheus/lienthong-alerts.test.yml), minute by minute, with the same outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from exchange.alert_messages import RUNBOOK
from exchange.alerting import (
    SEVERITIES,
    Alert,
    AlertMemory,
    Thresholds,
    evaluate,
)
from tests.conftest import ROOT

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def link(
    neighbour: str = "central",
    *,
    state: str = "up",
    since: datetime | None = None,
    out: int = 0,
    inbound: int = 0,
    role: str = "parent",
) -> dict[str, Any]:
    return {
        "neighbour": neighbour,
        "role": role,
        "state": state,
        "since": since.isoformat() if since else None,
        "last_error": "connection refused" if state == "down" else None,
        "backlog": {
            "out": {"urgent": 0, "normal": out, "bulk": 0},
            "in": {"urgent": 0, "normal": inbound, "bulk": 0},
        },
        "backlog_total": out + inbound,
    }


def snapshot(**parts: Any) -> dict[str, Any]:
    """A /status document shaped as in the contract, where nothing is wrong."""
    status: dict[str, Any] = {
        "node": {"id": "province-h53", "level": "province", "version": "0.1.0"},
        "drain": None,
        "links": [link()],
        "upstreams": [],
        "dead_letters": {"count": 0, "items": []},
        "quarantine": {"count": 0, "items": []},
        "failed": {"count": 0, "items": []},
        "overdue": {"count": 0, "items": []},
        "certificates": [
            {"subject": "node province-h53", "kind": "node", "days_left": 364, "warn": False}
        ],
        "directory": {"version": 3, "issued_at": None, "age_s": 120.0},
        "clock": {"offset_s": 0.4, "ok": True, "basis": "central"},
        "alerts": [],
    }
    status.update(parts)
    return status


def names(alerts: list[Alert]) -> list[tuple[str, str]]:
    return sorted(alert.key for alert in alerts)


def test_the_severities_are_those_of_the_prometheus_rules() -> None:
    rules = yaml.safe_load((ROOT / "deploy/prometheus/lienthong-alerts.yml").read_text())
    severities = {r["alert"]: r["labels"]["severity"] for g in rules["groups"] for r in g["rules"]}
    assert severities == dict(SEVERITIES)


def test_every_alert_says_what_to_do_in_both_languages() -> None:
    assert set(RUNBOOK) == set(SEVERITIES)
    assert all(vi and en and vi != en for vi, en in RUNBOOK.values())


def test_nothing_fires_on_a_healthy_node() -> None:
    assert evaluate(snapshot(), now=T0, memory=AlertMemory()) == []


def test_a_link_down_then_restored_as_in_the_promtool_tests() -> None:
    """Down at 2m, 20 more waiting a minute; back at 21m, drained by 27m."""
    memory = AlertMemory()
    backlog = [0, 0, *range(0, 361, 20), 360, 300, 240, 180, 120, 60, 0] + [0] * 10
    seen: dict[int, list[tuple[str, str]]] = {}
    for m, waiting in enumerate(backlog):
        down = 2 <= m <= 20
        links = [
            link(
                state="down" if down else "up", since=minute(2) if down else minute(21), out=waiting
            ),
            link("commune-x", role="child", out=150),  # high, but not growing
        ]
        seen[m] = names(evaluate(snapshot(links=links), now=minute(m), memory=memory))
    down, growing = ("LienthongLinkDown", "central"), ("LienthongBacklogGrowing", "central")
    assert seen[1] == seen[6] == []  # pending for 4 minutes: not yet
    assert seen[7] == [down]  # 100 waiting: not more than 100
    assert seen[8] == seen[20] == [growing, down]
    assert seen[21] == [growing]  # the link is back; the backlog is still far above 15 min ago
    assert seen[35] == []
    assert ("LienthongBacklogGrowing", "commune-x") not in {k for v in seen.values() for k in v}


def test_the_link_says_since_when_it_is_down() -> None:
    status = snapshot(links=[link(state="down", since=minute(-10))])
    [alert] = evaluate(status, now=T0, memory=AlertMemory())
    assert (alert.name, alert.severity, alert.since) == (
        "LienthongLinkDown",
        "critical",
        minute(-10),
    )
    assert alert.summary == "link to central (parent) down since 2026-11-29T00:50+00:00"
    assert alert.summary_vi == "mất liên kết tới central (nút cha) từ 2026-11-29T00:50+00:00"
    assert alert.as_status() == {
        "name": "LienthongLinkDown",
        "severity": "critical",
        "summary": alert.summary,
    }


def test_a_backlog_that_grows_by_50_in_the_window_fires_below_100() -> None:
    memory = AlertMemory()
    totals = [3 * m for m in range(16)] + [95] * 5  # 45 in 15 minutes, then a jump
    fired = {
        m: evaluate(snapshot(links=[link(out=n)]), now=minute(m), memory=memory)
        for m, n in enumerate(totals)
    }
    assert fired[15] == []
    [alert] = fired[16]
    assert alert.key == ("LienthongBacklogGrowing", "central")
    assert alert.summary == "backlog to central growing: 95 waiting, +92 in 15 min"
    assert alert.summary_vi == "hàng đợi tới central đang tăng: 95 gói chờ, +92 trong 15 phút"


def test_the_backlog_history_stays_small_and_forgets_gone_links() -> None:
    memory = AlertMemory()
    for second in range(0, 3600, 2):
        at = T0 + timedelta(seconds=second)
        evaluate(snapshot(links=[link(out=second)]), now=at, memory=memory)
    assert len(memory.backlog["central"]) <= 900 / 10 + 2
    evaluate(snapshot(links=[]), now=minute(61), memory=memory)
    assert memory.backlog == {}


def test_dead_letters_fire_after_a_minute_and_resolve_when_handled() -> None:
    memory = AlertMemory()
    item = {"id": 7, "source": "intake", "reason": "x", "attempts": 5}
    dead = {"count": 2, "items": [{**item, "dead_at": minute(0).isoformat()}]}
    assert evaluate(snapshot(dead_letters=dead), now=minute(0.5), memory=memory) == []
    [alert] = evaluate(snapshot(dead_letters=dead), now=minute(1), memory=memory)
    assert (alert.name, alert.severity, alert.since) == ("LienthongDeadLetters", "warning", T0)
    assert alert.summary == "2 dead letter(s) wait for an operator"
    assert evaluate(snapshot(), now=minute(2), memory=memory) == []
    assert memory.began == {}


def test_overdue_acknowledgements_fire_after_an_hour() -> None:
    item = {"message_id": "m", "recipient": "000.00.00.H53", "due": minute(0).isoformat()}
    overdue = {"count": 1, "items": [item]}
    memory = AlertMemory()
    assert evaluate(snapshot(overdue=overdue), now=minute(59), memory=memory) == []
    assert names(evaluate(snapshot(overdue=overdue), now=minute(60), memory=memory)) == [
        ("LienthongOverdueAcknowledgements", "")
    ]


def test_certificates_warn_at_30_days_and_are_critical_at_7() -> None:
    def cert(subject: str, days: int) -> dict[str, Any]:
        return {"subject": subject, "kind": "agency", "days_left": days, "warn": days < 30}

    certs = [cert("000.00.00.H53", 20), cert("000.00.11.H53", 5), cert("000.00.22.H53", -2)]
    alerts = evaluate(snapshot(certificates=certs), now=T0, memory=AlertMemory())
    assert names(alerts) == [
        ("LienthongCertificateExpiring", "000.00.00.H53"),
        ("LienthongCertificateExpiring", "000.00.11.H53"),
        ("LienthongCertificateExpiring", "000.00.22.H53"),
        ("LienthongCertificateExpiringSoon", "000.00.11.H53"),
        ("LienthongCertificateExpiringSoon", "000.00.22.H53"),
    ]
    soon = {a.subject: a for a in alerts if a.name == "LienthongCertificateExpiringSoon"}
    assert soon["000.00.22.H53"].summary == "agency certificate 000.00.22.H53 expired 2 day(s) ago"
    assert soon["000.00.11.H53"].summary_vi == (
        "chứng thư số 000.00.11.H53 (của cơ quan) hết hạn sau 5 ngày"
    )
    renewed = [*certs, cert("000.00.11.H53", 390), cert("000.00.22.H53", 365)]
    assert names(evaluate(snapshot(certificates=renewed), now=T0, memory=AlertMemory())) == [
        ("LienthongCertificateExpiring", "000.00.00.H53")
    ]


def test_a_certificate_without_days_left_is_judged_by_its_date() -> None:
    cert = {"subject": "node province-h53", "kind": "node", "not_after": minute(60 * 24 * 3)}
    alerts = evaluate(snapshot(certificates=[cert]), now=T0, memory=AlertMemory())
    assert {a.name for a in alerts} == {
        "LienthongCertificateExpiring",
        "LienthongCertificateExpiringSoon",
    }


@pytest.mark.parametrize("offset", [90.0, -75.0])
def test_a_skewed_clock_fires_after_ten_minutes(offset: float) -> None:
    memory = AlertMemory()
    clock = {"offset_s": offset, "ok": False, "basis": "central"}
    assert evaluate(snapshot(clock=clock), now=minute(0), memory=memory) == []
    assert evaluate(snapshot(clock=clock), now=minute(9), memory=memory) == []
    [alert] = evaluate(snapshot(clock=clock), now=minute(10), memory=memory)
    assert alert.name == "LienthongClockSkew"
    assert alert.summary.startswith(f"clock off by {offset:+.0f} s")


def test_an_unknown_clock_offset_is_no_alert() -> None:
    clock = {"offset_s": None, "ok": True, "basis": "none"}
    memory = AlertMemory()
    evaluate(snapshot(clock=clock), now=minute(0), memory=memory)
    assert evaluate(snapshot(clock=clock), now=minute(30), memory=memory) == []


def test_a_directory_older_than_seven_days_is_stale() -> None:
    def judged(directory: dict[str, Any]) -> list[tuple[str, str]]:
        return names(evaluate(snapshot(directory=directory), now=T0, memory=AlertMemory()))

    assert judged({"version": 3, "issued_at": None, "age_s": 604000.0}) == []
    assert judged({"version": 3, "issued_at": None, "age_s": 605000.0}) == [
        ("LienthongDirectoryStale", "")
    ]
    issued = (T0 - timedelta(days=8)).isoformat()
    assert judged({"version": 3, "issued_at": issued, "age_s": None}) == [
        ("LienthongDirectoryStale", "")
    ]
    assert judged({"version": 3, "issued_at": None, "age_s": None}) == []


def test_an_upstream_down_fires_after_ten_minutes() -> None:
    def upstreams(state: str) -> list[dict[str, Any]]:
        return [
            {"name": "vdxp", "protocol": "vdxp", "state": state, "since": None},
            {"name": "bkav", "protocol": "bkav", "state": "up", "since": None},
        ]

    memory = AlertMemory()
    evaluate(snapshot(upstreams=upstreams("down")), now=minute(1), memory=memory)
    assert evaluate(snapshot(upstreams=upstreams("down")), now=minute(10), memory=memory) == []
    [alert] = evaluate(snapshot(upstreams=upstreams("down")), now=minute(11), memory=memory)
    assert (alert.name, alert.subject, alert.severity) == (
        "LienthongUpstreamDown",
        "vdxp",
        "critical",
    )
    assert evaluate(snapshot(upstreams=upstreams("up")), now=minute(12), memory=memory) == []


def test_thresholds_can_be_changed() -> None:
    status = snapshot(links=[link(state="down", since=minute(-2))])
    assert evaluate(status, now=T0, memory=AlertMemory()) == []
    quick = Thresholds(link_down_after_s=60)
    assert names(evaluate(status, now=T0, memory=AlertMemory(), thresholds=quick)) == [
        ("LienthongLinkDown", "central")
    ]


@pytest.mark.parametrize(
    "status",
    [
        {},
        {"links": "none", "dead_letters": [], "clock": {"offset_s": "far"}},
        {"links": [{"state": "down"}, 3], "certificates": [{"subject": 5}], "overdue": None},
        {"dead_letters": {"count": True}, "directory": {"age_s": "old"}},
    ],
)
def test_a_partial_or_odd_snapshot_raises_nothing(status: dict[str, Any]) -> None:
    assert evaluate(status, now=T0, memory=AlertMemory()) == []
