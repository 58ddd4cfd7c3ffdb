"""``python -m bench [SCENARIO ...] [--quick]``: run scenarios, print a markdown report.

Each scenario measures lienthong and its baseline in alternating rounds in one process,
so machine noise hits both alike; the ratio is taken round by round and its median,
minimum and maximum are reported.
"""

from __future__ import annotations

import argparse
import platform
import sys
from datetime import UTC, datetime

from bench import admission, fanout, intake, large, ops, pades, route

SCENARIOS = {
    "admission": admission.run,
    "intake": intake.run,
    "route": route.run,
    "fanout": fanout.run,
    "pades": pades.run,
    "ops": ops.run,
    "large": large.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help="one of: " + ", ".join(SCENARIOS) + " (default: all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="few iterations: a smoke run, not figures"
    )
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per case")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="repeats of each system in turn (intake, route, fanout; at least 3)",
    )
    args = parser.parse_args(argv)
    print(
        f"<!-- {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, Python {platform.python_version()}, "
        f"{platform.machine()}, {sys.platform} -->"
    )
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    for name in args.scenarios or SCENARIOS:
        SCENARIOS[name](
            rounds=2 if args.quick else args.rounds, quick=args.quick, repeats=args.repeats
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
