"""What a scenario hands back, kept per scenario, and the page made of them.

Each scenario returns a :class:`Section`: its title, the markdown it measured (method and
tables), the headline figures beside their baselines (with the target, where an issue set
one) and the plots it drew. The runner stamps it with the command, the time and the commit,
keeps it as JSON in the results folder, and writes the whole page (docs/benchmarks.md) from
every kept section, so one scenario can be run again without losing the others.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Headline:
    """One row of the summary table: lienthong's figure beside its baseline's."""

    measure: str  # "capacity, signed 10 KiB, packages/s"
    ours: str  # "320 (256–354)": median (min–max) over the repeats
    baseline: str  # the baseline's figure, same form; "" when the ratio is to itself
    ratio: str  # "0.72 (0.63–0.86)": per repeat, lienthong / baseline
    target: str = ""  # "≥ 0.7×", "" where no issue set one
    met: bool | None = None  # None: no target


@dataclass
class Section:
    scenario: str
    title: str
    body: str  # markdown, from the level-3 heading down
    headlines: list[Headline] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # PNG file names, beside the page
    command: str = ""
    measured: str = ""  # "2026-11-29 04:10 UTC at 1a2b3c4"
    quick: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Section:
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        heads = {f.name for f in fields(Headline)}
        raw["headlines"] = [
            Headline(**{k: v for k, v in h.items() if k in heads}) for h in raw.get("headlines", [])
        ]
        return cls(**{k: v for k, v in raw.items() if k in known})


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "exchange", "adapters"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent.parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown commit"
    return out + (" with local changes" if dirty else "")


def stamp(section: Section, command: str, quick: bool) -> Section:
    section.command = command
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    section.measured = (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC at {commit()} "
        f"(Python {platform.python_version()}, {cores} cores)"
    )
    section.quick = quick
    return section


def keep(section: Section, results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{section.scenario}.json").write_text(section.to_json() + "\n")


def kept(results: Path, order: list[str]) -> list[Section]:
    found = {p.stem: Section.from_json(p.read_text()) for p in results.glob("*.json")}
    return [found[name] for name in order if name in found]


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: ""}[met]


def page(sections: list[Section], preamble: str) -> str:
    lines = [preamble.rstrip(), "", "## Summary", ""]
    lines += [
        "| scenario | measure | lienthong | baseline | ratio | target | | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in sections:
        for h in s.headlines:
            lines.append(
                f"| [{s.scenario}](#{s.scenario}) | {h.measure} | {h.ours} | {h.baseline} "
                f"| {h.ratio} | {h.target} | {_mark(h.met)} | `{s.command}` |"
            )
    missed = [
        f"{h.measure} ({s.scenario})" for s in sections for h in s.headlines if h.met is False
    ]
    if missed:
        lines += [
            "",
            "Targets not met: " + "; ".join(missed) + ". Where the time goes, from the "
            "profiles, and what would close each gap: [docs/profiles.md](profiles.md).",
        ]
    for s in sections:
        lines += ["", f'<a id="{s.scenario}"></a>', "", f"## {s.title}", ""]
        quick = " (a quick run: its numbers mean nothing)" if s.quick else ""
        lines.append(f"Measured {s.measured}, `{s.command}`{quick}.")
        lines += ["", s.body.strip()]
        for plot in s.plots:
            lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"
