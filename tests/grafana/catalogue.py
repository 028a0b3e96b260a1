"""What the dashboards may reference: metric names, and panel queries with variables filled in.

Shared by the static tests (every metric is exported or recorded) and the live test (every
query returns data), so both substitute Grafana's variables the same way.
"""

from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import yaml

from tests.harness import REPO_ROOT
from vigil.paths import RULES_DIR

__all__ = ["expand_promql", "known_metrics", "metric_names", "recorded_metrics"]

# Series Prometheus itself produces for every scrape and every alerting rule.
PROMETHEUS_BUILTINS = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                       "scrape_samples_post_metric_relabeling", "scrape_series_added",
                       "ALERTS", "ALERTS_FOR_STATE"}
# prometheus_client's process collector, which the demo target and Vigil's services export.
PROCESS_METRICS = {"process_resident_memory_bytes", "process_virtual_memory_bytes",
                   "process_cpu_seconds_total", "process_open_fds", "process_max_fds",
                   "process_start_time_seconds"}

_METRIC_TOKEN = re.compile(r"\b((?:vigil|demo|http|process)_[a-z0-9_]+)\b")


def expand_promql(expr: str, *, target: str = "demo", rate_interval: str = "1m",
                  range_: str = "1h") -> str:
    """Replace Grafana's variables the way Grafana would before sending the query."""
    return (expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
            .replace("$__interval", rate_interval).replace("$target", target))


def metric_names(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects (parsed, not grepped)."""
    names: set[str] = set()

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    names.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expand_promql(expr)), visit)
    return names


def recorded_metrics(rules_dir: Path = RULES_DIR) -> set[str]:
    """Names recorded by the rules in rules/*.rules.yml."""
    names: set[str] = set()
    for path in sorted(rules_dir.glob("*.rules.yml")):
        for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
            names.update(r["record"] for r in group.get("rules", []) if "record" in r)
    return names


def _documented_demo_metrics() -> set[str]:
    text = (REPO_ROOT / "docs" / "demo-target.md").read_text()
    section = text.split("## Metrics", 1)[1]
    return set(re.findall(r"`([a-z_][a-z0-9_]*)", section))


def _vigil_metrics_in_code() -> set[str]:
    """vigil_* names written in the services' code and their docs pages."""
    names: set[str] = set()
    files = [p for folder in ("exporter", "forecaster", "remediator")
             for p in (REPO_ROOT / folder).rglob("*.py")]
    files += [p for p in (REPO_ROOT / "docs").glob("*.md")
              if p.name.startswith(("exporter", "forecaster", "remediator"))]
    for path in files:
        names.update(m for m in _METRIC_TOKEN.findall(path.read_text(errors="replace"))
                     if m.startswith("vigil_"))
    return names


def known_metrics() -> set[str]:
    """Everything a panel may select: Vigil's, the demo target's, the rules' and Prometheus'."""
    base = (_documented_demo_metrics() | _vigil_metrics_in_code() | recorded_metrics()
            | PROMETHEUS_BUILTINS | PROCESS_METRICS)
    # A histogram or summary exports _bucket/_sum/_count series beside its name; prometheus
    # client counters are documented with or without _total.
    derived = {f"{name}{suffix}" for name in base
               for suffix in ("_bucket", "_sum", "_count", "_total")}
    return base | derived
