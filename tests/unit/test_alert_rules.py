"""The Prometheus alert rules (deploy/prometheus/): promtool checks them and runs their unit
tests where it is installed (scripts/lib.sh installs it where apt can); everywhere, the
rules are read as YAML and held to the operator-surface contract: the alert names, their
severities and waits, the metric names, and the annotations a person reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

RULES = ROOT / "deploy" / "prometheus" / "lienthong-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "lienthong-alerts.test.yml"
PROMTOOL = shutil.which("promtool")

# The contract (issue 8, "Metrics" and "Alert rules"): every gauge and counter a node serves.
SPEC_METRICS = frozenset(
    {
        "lienthong_packages_admitted_total",
        "lienthong_packages_refused_total",
        "lienthong_packages_routed_total",
        "lienthong_packages_delivered_total",
        "lienthong_packages_fetched_total",
        "lienthong_admission_seconds",
        "lienthong_delivery_seconds",
        "lienthong_link_up",
        "lienthong_link_backlog",
        "lienthong_upstream_up",
        "lienthong_upstream_backlog",
        "lienthong_queue_depth",
        "lienthong_dead_letters",
        "lienthong_quarantined",
        "lienthong_overdue_acknowledgements",
        "lienthong_mailbox_pending",
        "lienthong_certificate_days_left",
        "lienthong_clock_offset_seconds",
        "lienthong_directory_age_seconds",
        "lienthong_draining",
        "lienthong_store_up",
        "lienthong_broker_up",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

# name: (severity, for, the metric its expression reads, the labels it names in its summary)
SPEC_ALERTS: Mapping[str, tuple[str, str | None, str, tuple[str, ...]]] = {
    "LienthongLinkDown": ("critical", "5m", "lienthong_link_up", ("node", "neighbour")),
    "LienthongBacklogGrowing": (
        "warning",
        None,
        "lienthong_link_backlog",
        ("node", "neighbour"),
    ),
    "LienthongDeadLetters": ("warning", "1m", "lienthong_dead_letters", ("node",)),
    "LienthongOverdueAcknowledgements": (
        "warning",
        "1h",
        "lienthong_overdue_acknowledgements",
        ("node",),
    ),
    "LienthongCertificateExpiring": (
        "warning",
        None,
        "lienthong_certificate_days_left",
        ("node", "subject"),
    ),
    "LienthongCertificateExpiringSoon": (
        "critical",
        None,
        "lienthong_certificate_days_left",
        ("node", "subject"),
    ),
    "LienthongClockSkew": ("warning", "10m", "lienthong_clock_offset_seconds", ("node",)),
    "LienthongDirectoryStale": ("warning", None, "lienthong_directory_age_seconds", ("node",)),
    "LienthongUpstreamDown": ("critical", "10m", "lienthong_upstream_up", ("node", "upstream")),
}

_METRIC = re.compile(r"\blienthong_[a-z0-9_]+\b")


def _known_metric(name: str) -> bool:
    if name in SPEC_METRICS:
        return True
    return any(name.endswith(s) and name[: -len(s)] in SPEC_METRICS for s in HISTOGRAM_SUFFIXES)


def rule_problems(rules: Any) -> list[str]:
    """Every way the rules document departs from the contract; empty when it keeps it."""
    problems: list[str] = []
    groups = rules.get("groups") if isinstance(rules, Mapping) else None
    if not isinstance(groups, list) or not groups:
        return ["no groups"]
    seen: set[str] = set()
    for group in groups:
        for rule in group.get("rules") or []:
            name = rule.get("alert")
            if name not in SPEC_ALERTS:
                problems.append(f"{name or rule.get('record')!r}: not an alert of the contract")
                continue
            seen.add(name)
            severity, wait, metric, named = SPEC_ALERTS[name]
            labels = rule.get("labels") or {}
            if labels.get("severity") != severity:
                problems.append(f"{name}: severity {labels.get('severity')!r}, not {severity!r}")
            if rule.get("for") != wait:
                problems.append(f"{name}: for {rule.get('for')!r}, not {wait!r}")
            expr = str(rule.get("expr", ""))
            metrics = set(_METRIC.findall(expr))
            unknown = sorted(m for m in metrics if not _known_metric(m))
            if unknown:
                problems.append(f"{name}: reads {', '.join(unknown)}, not in the contract")
            if metric not in metrics:
                problems.append(f"{name}: does not read {metric}")
            annotations = rule.get("annotations") or {}
            for key in ("summary", "description", "runbook"):
                if not str(annotations.get(key, "")).strip():
                    problems.append(f"{name}: no {key} annotation")
            summary = str(annotations.get("summary", ""))
            for label in named:
                if f"$labels.{label}" not in summary:
                    problems.append(f"{name}: the summary does not name $labels.{label}")
    for name in sorted(set(SPEC_ALERTS) - seen):
        problems.append(f"{name}: missing")
    return problems


def rule_test_problems(rule_tests: Any, rules: Any) -> list[str]:
    """The unit-test file names only alerts that exist, and shows each one firing and not."""
    defined = {
        rule.get("alert") for group in rules.get("groups") or [] for rule in group.get("rules")
    }
    fires: set[str] = set()
    quiet: set[str] = set()
    problems: list[str] = []
    for case in rule_tests.get("tests") or []:
        for check in case.get("alert_rule_test") or []:
            name = check.get("alertname")
            if name not in defined:
                problems.append(f"tests: {name!r} is not a rule")
            expected = check.get("exp_alerts") or []
            (fires if expected else quiet).add(name)
            for alert in expected:
                labels = alert.get("exp_labels") or {}
                if "severity" not in labels:
                    problems.append(f"tests: {name} at {check.get('eval_time')}: no severity")
    for name in sorted(defined & set(SPEC_ALERTS)):
        if name not in fires:
            problems.append(f"tests: {name} is never shown firing")
        if name not in quiet:
            problems.append(f"tests: {name} is never shown not firing")
    return problems


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_the_rules_keep_the_contract() -> None:
    assert rule_problems(_load(RULES)) == []


def test_the_rule_tests_cover_every_alert() -> None:
    assert rule_test_problems(_load(RULE_TESTS), _load(RULES)) == []


def _rule(rules: Any, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        r for g in rules["groups"] for r in g["rules"] if r.get("alert") == name
    )
    return found


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: _rule(r, "LienthongLinkDown").update(alert="LinkDown"), "'LinkDown': not an"),
        (
            lambda r: _rule(r, "LienthongDeadLetters")["labels"].update(severity="critical"),
            "LienthongDeadLetters: severity 'critical', not 'warning'",
        ),
        (
            lambda r: _rule(r, "LienthongLinkDown").pop("for"),
            "LienthongLinkDown: for None, not '5m'",
        ),
        (
            lambda r: _rule(r, "LienthongUpstreamDown").update(expr="lienthong_upstreams_up == 0"),
            "LienthongUpstreamDown: reads lienthong_upstreams_up, not in the contract",
        ),
        (
            lambda r: _rule(r, "LienthongClockSkew")["annotations"].pop("summary"),
            "LienthongClockSkew: no summary annotation",
        ),
        (
            lambda r: _rule(r, "LienthongLinkDown")["annotations"].update(summary="a link down"),
            "LienthongLinkDown: the summary does not name $labels.neighbour",
        ),
        (
            lambda r: r["groups"][0]["rules"].remove(_rule(r, "LienthongDirectoryStale")),
            "LienthongDirectoryStale: missing",
        ),
    ],
)
def test_the_contract_check_finds_each_departure(change: Any, problem: str) -> None:
    rules = _load(RULES)
    change(rules)
    assert any(p.startswith(problem) for p in rule_problems(rules)), rule_problems(rules)


def test_the_test_check_finds_unknown_and_untested_alerts() -> None:
    rules, rule_tests = _load(RULES), _load(RULE_TESTS)
    checks = [c for case in rule_tests["tests"] for c in case["alert_rule_test"]]
    for check in checks:
        if check["alertname"] == "LienthongDeadLetters":
            check["alertname"] = "LienthongDeadLetter"
    problems = rule_test_problems(rule_tests, rules)
    assert "tests: 'LienthongDeadLetter' is not a rule" in problems
    assert "tests: LienthongDeadLetters is never shown firing" in problems
    assert "tests: LienthongDeadLetters is never shown not firing" in problems


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=50, check=False
    )


needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (scripts/lib.sh installs it with apt)"
)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    result = _promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_runs_the_rule_tests() -> None:
    result = _promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_fails_rules_that_wait_longer_than_their_tests(tmp_path: Path) -> None:
    """The promtool path can fail: a LinkDown that waits 6 minutes breaks its tests."""
    rules = RULES.read_text(encoding="utf-8")
    assert rules.count("for: 5m") == 1
    (tmp_path / RULES.name).write_text(rules.replace("for: 5m", "for: 6m"), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    assert result.returncode != 0
    assert "LienthongLinkDown" in result.stdout + result.stderr
