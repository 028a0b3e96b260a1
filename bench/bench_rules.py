"""Benchmark: what Vigil's rules cost Prometheus per evaluation, against a one-rule baseline.

    .venv/bin/python bench/bench_rules.py [--quick] [--seconds N]

Starts the demo target with steady traffic and two real Prometheus servers scraping it every
second: one loads rules/*.rules.yml, the other a baseline group with a single recording rule
(`sum by (job) (rate(http_requests_total[5m]))`). Samples every group's
prometheus_rule_group_last_duration_seconds once a second and prints p50/p99 per group, the
total per evaluation cycle, and the ratio of Vigil's total to the baseline group.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from vigil.demo.client import start_demo_target

from vigil.paths import RULES_DIR
from vigil.procs import prometheus_config, start_prometheus

BASELINE = {"groups": [{"name": "baseline", "rules": [
    {"record": "job:http_requests:rate5m", "expr": "sum by (job) (rate(http_requests_total[5m]))"}]}]}


def group_durations(url: str) -> dict[str, float]:
    """Each group's last evaluation time, read from Prometheus' own /metrics."""
    text = requests.get(f"{url}/metrics", timeout=5).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "prometheus_rule_group_last_duration_seconds":
            for sample in family.samples:
                out[sample.labels["rule_group"].rsplit(";", 1)[-1]] = sample.value
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sample for 10 s instead of 40 s")
    parser.add_argument("--seconds", type=int, default=None)
    args = parser.parse_args()
    seconds = args.seconds or (10 if args.quick else 40)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-rules-") as tmp:
        work = Path(tmp)
        target = start_demo_target(work / "demo")
        procs = [target.process]
        stop = threading.Event()
        try:
            target.process.wait_ready(30)

            def traffic() -> None:
                paths = ["/api/v1/items", "/api/v1/users", "/api/v1/orders/summary", "/api/v1/quote"]
                i = 0
                while not stop.wait(0.05):
                    try:
                        target.api("GET", paths[i % len(paths)], timeout=5)
                    except requests.RequestException:
                        pass
                    i += 1

            threading.Thread(target=traffic, daemon=True).start()
            baseline_file = work / "baseline.rules.yml"
            baseline_file.write_text(yaml.safe_dump(BASELINE))
            scrape = {"demo": [target.host_port]}
            vigil_proc, vigil_url = start_prometheus(
                work / "prom-vigil", prometheus_config(scrape, rule_files=sorted(RULES_DIR.glob("*.rules.yml"))))
            procs.append(vigil_proc)
            base_proc, base_url = start_prometheus(
                work / "prom-base", prometheus_config(scrape, rule_files=[baseline_file]))
            procs.append(base_proc)
            vigil_proc.wait_ready(30)
            base_proc.wait_ready(30)
            time.sleep(5)  # let a few scrapes and evaluations happen first
            samples: dict[str, list[float]] = {}
            base: list[float] = []
            for _ in range(seconds):
                for group, value in group_durations(vigil_url).items():
                    samples.setdefault(group, []).append(value)
                base += list(group_durations(base_url).values())
                time.sleep(1)
        finally:
            stop.set()
            for proc in reversed(procs):
                proc.stop()
    if not samples or not base:
        print("no rule evaluations were observed", file=sys.stderr)
        return 1
    print(f"rule group evaluation time, {seconds} samples, 1 s evaluation interval")
    print(f"{'group':<20} {'p50 ms':>8} {'p99 ms':>8}")
    for group in sorted(samples):
        print(f"{group:<20} {pct(samples[group], .5) * 1e3:8.3f} {pct(samples[group], .99) * 1e3:8.3f}")
    n = min(len(v) for v in samples.values())
    totals = [sum(v[i] for v in samples.values()) for i in range(n)]
    print(f"{'all Vigil groups':<20} {pct(totals, .5) * 1e3:8.3f} {pct(totals, .99) * 1e3:8.3f}")
    print(f"{'baseline (1 rule)':<20} {pct(base, .5) * 1e3:8.3f} {pct(base, .99) * 1e3:8.3f}")
    print(f"ratio all Vigil groups / baseline: p50 {statistics.median(totals) / statistics.median(base):.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
