"""The full scenario suite on the real loop, with the scorecard as printed.

Usage: .venv/bin/python bench/bench_scenarios.py [--output-dir DIR] [--control-duration S]

Prints the scorecard (each mission metric beside its target) and, as the same-run ratio,
the wall time of the whole suite against the 20-minute budget of issue 9.
"""

from __future__ import annotations

import argparse
import sys
import time

from vigil.demo.scenarios import main as scenarios_main

BUDGET_SECONDS = 20 * 60


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="scenario-results")
    parser.add_argument("--control-duration", type=float, default=600)
    args = parser.parse_args()
    start = time.monotonic()
    code = scenarios_main(["--output-dir", args.output_dir,
                           "--control-duration", str(args.control_duration)])
    wall = time.monotonic() - start
    print(f"\nfull suite wall time: {wall:.0f}s = {wall / BUDGET_SECONDS:.2f}x the 20-minute budget")
    return code


if __name__ == "__main__":
    sys.exit(main())
