"""``python -m bench [SCENARIO ... | all] [--quick]``: run scenarios and write the page.

Each scenario measures lienthong and its baseline in the same run (alternating rounds in
one process, or both systems side by side as processes, measured in turn), so machine
noise hits both alike; ratios are taken round by round or repeat by repeat and reported
as median (min–max).

Every scenario run is kept (as JSON, beside the page: ``docs/bench/results/``), and the page
is written again from all kept scenarios: ``python -m bench all`` measures everything and
writes docs/benchmarks.md; ``python -m bench sizes`` measures one scenario again and keeps
the others' last figures; ``python -m bench report`` only writes the page. ``--quick`` is a
smoke run: its page goes to build/bench-quick/ unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import shlex
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import (
    admission,
    fanout,
    hostile,
    intake,
    large,
    ops,
    pades,
    route,
    scaleout,
    sizes,
    sustained,
)
from bench.report import Section, keep, kept, page, stamp

SCENARIOS: dict[str, Callable[..., Section | None]] = {
    "admission": admission.run,
    "intake": intake.run,
    "sizes": sizes.run,
    "route": route.run,
    "sustained": sustained.run,
    "scaleout": scaleout.run,
    "fanout": fanout.run,
    "large": large.run,
    "pades": pades.run,
    "ops": ops.run,
    "hostile": hostile.run,
}
TITLES = {
    "admission": "Admission",
    "intake": "Intake",
    "sizes": "Package sizes, one hop and the 4-hop route (issue 10)",
    "route": "Route (4 hops)",
    "sustained": "Sustained load (issue 10)",
    "scaleout": "Scale-out: two service instances of one node (issue 10)",
    "fanout": "Fan-out",
    "large": "Large packages over the 4-hop route (issue 9)",
    "pades": "What reading PDF signatures costs (issue 7)",
    "ops": "What watching a node costs (issue 8)",
    "hostile": "Hostile input at every door, under load (issue 11)",
}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
QUICK = Path("build") / "bench-quick" / "benchmarks.md"
PREAMBLE = """# Benchmarks

<!-- Written by `python -m bench`; edit bench/ (the scenarios, bench/report.py), not this page. -->

Every figure here is measured beside its baseline in the same run, because these machines
are shared and noisy: read the ratios first, the absolute times second. Figures are medians
with (minimum–maximum) over the rounds or repeats. The command that measured each section is
printed under its title with the machine it ran on; `python -m bench all` measures them
all again and writes this page. What each change was and the profile that justified it:
docs/profiles.md.
"""


class _Tee(io.TextIOBase):
    """Prints as it goes and keeps a copy: a scenario's report is also its section."""

    def __init__(self, out: io.TextIOBase) -> None:
        self.out, self.kept = out, io.StringIO()

    def write(self, text: str) -> int:
        self.out.write(text)
        self.out.flush()
        return self.kept.write(text)


def _run(name: str, options: dict[str, object], plots: Path) -> Section:
    run = SCENARIOS[name]
    accepted = inspect.signature(run).parameters
    kwargs = {k: v for k, v in {**options, "plots": plots}.items() if k in accepted}
    tee = _Tee(sys.stdout)  # type: ignore[arg-type]
    with contextlib.redirect_stdout(tee):
        section = run(**kwargs)
    if section is None:  # an older scenario: what it printed is its section
        section = Section(name, TITLES.get(name, name), tee.kept.getvalue())
    elif not section.body:  # it printed its body, and handed back its headlines
        section.body = tee.kept.getvalue()
    else:
        print(section.body)
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="'all', 'report' (only write the page), or one or more of: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--quick", action="store_true", help="few iterations: a smoke run, not figures"
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per case")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats of each system in turn (intake, route, fanout, scaleout; at least 3)",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the sustained run")
    parser.add_argument(
        "--out", type=Path, help="the page to write (default: docs/benchmarks.md; quick: build/)"
    )
    args = parser.parse_args(argv)
    names = args.scenarios or ["all"]
    unknown = set(names) - set(SCENARIOS) - {"all", "report"}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if "all" in names:
        names = list(SCENARIOS)
    names = [n for n in names if n != "report"]
    out: Path = args.out or (QUICK if args.quick else DOCS)
    results, plots = out.parent / "bench" / "results", out.parent / "bench"
    options = {
        "rounds": 2 if args.quick else args.rounds,
        "quick": args.quick,
        "repeats": args.repeats,
        "minutes": args.minutes,
    }
    failed = []
    for name in names:
        command = "python -m bench " + shlex.join(
            [name, *(["--quick"] if args.quick else []), *_given(argv, args)]
        )
        try:
            section = stamp(_run(name, options, plots), command, args.quick)
        except Exception:  # noqa: BLE001 (the others still run; the exit status says so)
            traceback.print_exc()
            print(f"\nscenario {name} failed: its last kept figures stay", file=sys.stderr)
            failed.append(name)
            continue
        keep(section, results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page(kept(results, list(SCENARIOS)), PREAMBLE))
    print(f"\nwrote {out}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _given(argv: list[str] | None, args: argparse.Namespace) -> list[str]:
    """The options that change figures and differ from their defaults, to print beside."""
    del argv
    defaults = {"rounds": 7, "repeats": 3, "minutes": 10.0}
    out = []
    for name, default in defaults.items():
        value = getattr(args, name)
        if value != default:
            out += [f"--{name}", f"{value:g}" if isinstance(value, float) else str(value)]
    return out


if __name__ == "__main__":
    raise SystemExit(main())
