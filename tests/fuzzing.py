"""Settings and a tally for the fuzz tests (tests/unit/test_fuzz_*.py).

Two profiles, chosen by ``HYPOTHESIS_PROFILE`` (registered in tests/conftest.py):

- ``ci`` (the default): each property runs its own small number of examples, derandomized
  (the same examples on every run, so CI never flakes on a new draw) and without the
  example database (signed inputs carry fresh keys each session, so saved ones could not
  replay anyway).
- ``long``: LONG_FACTOR times the examples, from a fresh random seed each run, for an
  on-demand search (docs/testing.md says how).

Every example a fuzz property runs is counted; the session summary prints the total
("fuzz: N examples tried"), the figure docs/reliability.md reports.
"""

from __future__ import annotations

import os
from collections import Counter

from hypothesis import HealthCheck, settings

LONG = os.environ.get("HYPOTHESIS_PROFILE") == "long"
LONG_FACTOR = 30

TRIED: Counter[str] = Counter()
"""Examples run per property in this session (shrinking included)."""


def fuzz(examples: int) -> settings:
    """Settings for one fuzz property that runs ``examples`` examples in CI."""
    return settings(
        max_examples=examples * LONG_FACTOR if LONG else examples,
        derandomize=not LONG,
        database=None,
        deadline=None,  # signing and XSD work make single examples slow on a shared machine
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def tried(name: str) -> None:
    """Count one example of the property ``name``."""
    TRIED[name] += 1
