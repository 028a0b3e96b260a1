"""Every fault scenario of the reference stack (Kinto, Datasette, PostgreSQL, supervisord and
the exporters) on the real loop, with its scorecard.

Usage: .venv/bin/python bench/bench_reference.py [--output-dir DIR] [--control-duration S]
       [--with-demo]

Prints the reference stack's scorecard (and, with --with-demo, the demo's full suite beside
it, one scorecard per stack). The same-run baseline is a bare `supervisorctl restart` of
Datasette until its health URL answers, measured on the same stack before the scenarios: the
ratio printed is the reference stack's mean time to recovery (fault to verified fix, through
probe, rule, Alertmanager, remediator and verification) against that bare restart.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import requests
from vigil.demo.reference import ReferenceStack
from vigil.demo.reference_scenarios import REFERENCE_SCENARIOS
from vigil.demo.scenarios import _human_receivers, run_scenario
from vigil.demo.scorecard import Scorecard

from vigil.sink import WebhookReceiver


def bare_restart_seconds(stack: ReferenceStack, runs: int = 3) -> float:
    """Mean wall time of `supervisorctl restart datasette` until it answers again."""
    url = f"{stack.url('datasette')}/-/versions.json"
    times = []
    for _ in range(runs):
        start = time.monotonic()
        stack.supervisorctl("restart", "datasette")
        while True:
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        times.append(time.monotonic() - start)
    return sum(times) / len(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output-dir", default="scenario-results-reference")
    parser.add_argument("--control-duration", type=float, default=300)
    parser.add_argument("--with-demo", action="store_true",
                        help="also run the demo's full suite (bench/bench_scenarios.py) after it")
    args = parser.parse_args()
    human = WebhookReceiver().start()
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-reference-"))
    stack = ReferenceStack(workdir, am_transform=lambda d: _human_receivers(d, human.url))
    results = []
    started = time.monotonic()
    try:
        stack.start()
        baseline = bare_restart_seconds(stack)
        for scenario in REFERENCE_SCENARIOS:
            duration = args.control_duration if scenario.kind == "control" else None
            results.append(run_scenario(stack, scenario, human, duration=duration))
    finally:
        stack.stop()
        human.stop()
    wall = time.monotonic() - started
    if args.with_demo:
        from vigil.demo.scenarios import main as scenarios_main

        demo_out = Path(args.output_dir) / "demo"
        code = scenarios_main(["--output-dir", str(demo_out),
                               "--control-duration", str(args.control_duration)])
        if code != 0:
            return code
        import json

        from vigil.demo.scenarios import ScenarioResult

        data = json.loads((demo_out / "scorecard.json").read_text())
        results = [ScenarioResult(**r) for r in data["scenarios"]] + results
    card = Scorecard(results)
    card.write(Path(args.output_dir))
    card.print()
    ref = card.stacks()["reference"].aggregate()
    mttr = ref["mttr_mean_seconds"]
    print(f"\nbare supervisorctl restart until it answers: {baseline:.2f}s (mean of 3)")
    if mttr is not None:
        print(f"reference MTTR {mttr:.1f}s = {mttr / baseline:.1f}x a bare restart "
              "(detection, alert, remediation and verification included)")
    print(f"reference suite wall time {wall:.0f}s; wrote {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
