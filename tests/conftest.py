from __future__ import annotations

from pathlib import Path

import pytest

from exchange.admission import Admission
from exchange.directory import SubjectBinding
from tests.pki import DevPki, make_test_pki

pytest_plugins = ["tests.browser"]  # the browser_page fixture: headless Chromium

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
