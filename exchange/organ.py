"""Agency codes (OrganId, QCVN 102:2016 §5): read right to left, levels as data.

``000.21.31.H53`` is commune 21 under district 31 under province H53. Groups of zeros
mean "this level is not used". Levels are not a fixed four: the 2025 reforms remove the
district level, and real traffic carries ids such as ``28.22.H17`` (three groups),
``vxp.saas.03`` (a tenant) or ``H37.DN.001`` (an enterprise). Those are accepted and
marked non-standard; an id whose top group is not a level-1 unit is one opaque level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LEVEL1 = re.compile(r"[A-Z]\d{2}")
_STANDARD = re.compile(r"\d{3}\.\d{2}\.\d{2}\.[A-Z]\d{2}")
_ALLOWED = re.compile(r"[0-9A-Za-z.]{1,35}")


@dataclass(frozen=True)
class OrganCode:
    raw: str
    levels: tuple[str, ...]
    """Groups from the top level down, trailing unused levels dropped: ("H53", "31", "21")."""
    standard: bool
    """True for the DDD.CC.BB.XNN form of QCVN 102:2016."""

    @property
    def depth(self) -> int:
        return len(self.levels)

    @property
    def top(self) -> str:
        return self.levels[0]

    def is_within(self, other: OrganCode) -> bool:
        """True when this agency sits under ``other`` (or is ``other``)."""
        return self.levels[: other.depth] == other.levels

    def parent(self) -> OrganCode | None:
        """The agency one level up, written in this code's layout (None at the top)."""
        if self.depth <= 1:
            return None
        levels = self.levels[:-1]
        while len(levels) > 1 and _is_zero(levels[-1]):  # 000.21.00.H53 -> 000.00.00.H53
            levels = levels[:-1]
        # keep the width of every group: 000.21.31.H53 -> 000.00.31.H53
        widths = [len(group) for group in reversed(self.raw.split("."))]
        groups = [levels[i] if i < len(levels) else "0" * widths[i] for i in range(len(widths))]
        return OrganCode(".".join(reversed(groups)), levels, self.standard)


def _is_zero(group: str) -> bool:
    return group != "" and set(group) == {"0"}


def parse_organ_id(raw: str) -> OrganCode:
    """Parse any OrganId that passes the contract's character rule; never raises for those."""
    value = raw.strip()
    if not _ALLOWED.fullmatch(value):
        raise ValueError(f"{raw!r} is not an agency code (0-9, A-Z, a-z and '.', at most 35)")
    groups = value.split(".")
    ordered = list(reversed(groups))
    if not _LEVEL1.fullmatch(ordered[0]) or any(g == "" for g in groups):
        return OrganCode(value, (value,), False)
    while len(ordered) > 1 and _is_zero(ordered[-1]):
        ordered.pop()
    return OrganCode(value, tuple(ordered), bool(_STANDARD.fullmatch(value)))
