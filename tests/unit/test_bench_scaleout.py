"""The scale-out scenario's report, from bursts made up here (no services): the headline
compares two instances with one repeat by repeat, and a duplicate stops the run."""

from __future__ import annotations

import pytest

from bench.scaleout import Burst, Duplicates, _section

NONE = Duplicates(not_once=0, delivered_twice=0, published_twice=0, link_copies=10)


def bursts(one: list[float], two: list[float], found: Duplicates = NONE) -> dict[int, list[Burst]]:
    return {
        1: [Burst(1, t, 9.0, NONE) for t in one],
        2: [Burst(2, t, 10.0, found) for t in two],
    }


def test_the_headline_is_two_instances_beside_one_with_the_ratio_per_repeat() -> None:
    section = _section(bursts([100, 80, 90], [150, 100, 90]), 800, 3, 60.0, None)
    (headline,) = section.headlines
    assert (headline.ours, headline.baseline) == ("100 (90–150)", "90 (80–100)")
    assert headline.ratio == "1.25 (1.00–1.50)"  # 1.5, 1.25, 1.0: per repeat, not of medians
    assert headline.met is None  # no target: the machine's 2 cores are shared
    assert "| link copies published twice | 0 |" in section.body
    assert "the\n60 link copies were read back" in section.body
    assert section.plots == []


def test_a_duplicate_stops_the_run() -> None:
    twice = Duplicates(not_once=0, delivered_twice=0, published_twice=1, link_copies=10)
    with pytest.raises(RuntimeError, match=r"\| link copies published twice \| 1 \|"):
        _section(bursts([100], [150], twice), 30, 1, 10.0, None)
