from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from exchange.admission import Admission
from exchange.directory import SubjectBinding
from tests.pki import DevPki, make_test_pki

pytest_plugins = ["tests.browser"]  # the browser_page fixture: headless Chromium

# Hypothesis profiles, chosen by HYPOTHESIS_PROFILE: "ci" keeps Hypothesis's defaults (each
# test's own @settings still apply); "long" is for on-demand fuzzing, and the fuzz tests
# (tests/fuzzing.py) multiply their examples under it. docs/testing.md has the command.
settings.register_profile("ci", print_blob=True)
settings.register_profile("long", print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "schemas" / "examples"
REAL_SAMPLES = ROOT.parent / "shared" / "samples" / "real"


@pytest.fixture(scope="session")
def pki() -> DevPki:
    return make_test_pki()


@pytest.fixture(scope="session")
def admission(pki: DevPki) -> Admission:
    return Admission(trust=pki.trust, binder=SubjectBinding())


def example(name: str) -> bytes:
    return (EXAMPLES / "valid" / name).read_bytes()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many fuzz examples ran (tests/fuzzing.py), when any did."""
    from tests.fuzzing import TRIED

    if TRIED:
        profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
        terminalreporter.write_sep("-", f"fuzz ({profile} profile)")
        for name, count in sorted(TRIED.items()):
            terminalreporter.write_line(f"{count:>9,}  {name}")
        total = sum(TRIED.values())
        terminalreporter.write_line(
            f"fuzz: {total:,} examples tried across {len(TRIED)} properties"
        )
