"""The benchmark harness runs (a smoke run with few iterations; figures come from
``python -m bench`` on demand, never from assertions here)."""

from __future__ import annotations

import subprocess
import sys


def test_the_admission_scenario_runs_and_reports_a_ratio() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "admission", "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("| 10 KiB", "| 1 MiB"))]
    assert len(rows) == 2
    for row in rows:
        ratio = row.rstrip(" |").rsplit("|", 1)[-1].split()[0]
        assert float(ratio) > 0


def test_an_unknown_scenario_is_named() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "unknown scenario(s): nonsense" in result.stderr
