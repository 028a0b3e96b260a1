"""Load Vigil's rule and promtool test files, and lint rules the way pint would.

Pure logic over the YAML files and a real PromQL parser (promql-parser), shared by the
coverage, lint and integration tests. The lint reports problems as strings; it never raises
on a bad rule, so a test can show every problem at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from tests.harness import REPO_ROOT
from vigil.paths import DEPLOY_DIR, RULES_DIR

__all__ = [
    "RATE_FUNCTIONS",
    "SEVERITIES",
    "Rule",
    "known_metrics",
    "lint_rule",
    "lint_rules",
    "load_rules",
    "load_test_file",
    "min_rate_range",
    "parse_duration",
    "promtool_test_files",
    "rule_files",
    "runbook_anchor",
    "runbook_anchors",
    "selected_metrics",
    "time_compressed_copy",
]

SEVERITIES = ("critical", "warning", "info")
RATE_FUNCTIONS = ("rate", "irate", "increase")
COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")
COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
ALERT_NAME = re.compile(r"^[A-Z][a-z0-9]*(?:[A-Z][a-z0-9]*)*$")
RECORD_NAME = re.compile(r"^[a-z][a-z0-9_]*(?::[a-zA-Z0-9_]+){2,}$")
RUNBOOK_URL = "rules/runbook.md#alert-name-{}"


@dataclass(frozen=True)
class Rule:
    """One recording or alerting rule, with where it came from."""

    file: Path
    group: str
    data: dict[str, Any] = field(hash=False, compare=False)

    @property
    def name(self) -> str:
        return str(self.data.get("alert") or self.data.get("record"))

    @property
    def is_alert(self) -> bool:
        return "alert" in self.data

    @property
    def expr(self) -> str:
        return str(self.data["expr"])

    def __str__(self) -> str:
        return f"{self.file.name}:{self.group}:{self.name}"


def rule_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    return sorted(rules_dir.glob("*.rules.yml"))


def promtool_test_files(rules_dir: Path = RULES_DIR) -> list[Path]:
    return sorted((rules_dir / "tests").glob("*.test.yml"))


def load_rules(paths: Iterable[Path] | None = None) -> list[Rule]:
    out = []
    for path in paths if paths is not None else rule_files():
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            for data in group.get("rules", []):
                out.append(Rule(path, group["name"], data))
    return out


def load_test_file(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> timedelta:
    """Parse a Prometheus duration such as 1h30m; raise ValueError on anything else."""
    text = str(text).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in parts))


def _walk(expr: Any) -> Iterator[Any]:
    nodes: list[Any] = []
    promql_parser.walk(expr, pre_visit=lambda node: nodes.append(node))
    return iter(nodes)


def _selector_name(vs: Any) -> str | None:
    if vs.name:
        return str(vs.name)
    for m in vs.matchers.matchers:
        if m.name == "__name__" and str(m.op).endswith("Equal"):
            return str(m.value)
    return None


def selected_metrics(expr: str) -> set[str]:
    """Every metric name a PromQL expression selects."""
    names = set()
    for node in _walk(promql_parser.parse(expr)):
        if isinstance(node, promql_parser.VectorSelector):
            name = _selector_name(node)
            if name:
                names.add(name)
    return names


def min_rate_range(prometheus_yml: Path = DEPLOY_DIR / "prometheus.yml") -> timedelta:
    """Twice the longest scrape interval in deploy/prometheus.yml (Prometheus' 1m default)."""
    default = timedelta(minutes=1)
    if not prometheus_yml.exists():
        return 2 * default
    config = yaml.safe_load(prometheus_yml.read_text()) or {}
    glob = parse_duration((config.get("global") or {}).get("scrape_interval", "1m"))
    intervals = [glob] + [parse_duration(job["scrape_interval"])
                          for job in config.get("scrape_configs") or [] if "scrape_interval" in job]
    return 2 * max(intervals)


def _problems_in_expr(rule: Rule, min_range: timedelta) -> list[str]:
    try:
        tree = promql_parser.parse(rule.expr)
    except ValueError as exc:
        return [f"{rule}: expression does not parse: {exc}"]
    problems = []
    has_comparison = False
    for node in _walk(tree):
        if isinstance(node, promql_parser.BinaryExpr) and str(node.op) in COMPARISONS:
            has_comparison = True
        if not isinstance(node, promql_parser.Call):
            continue
        func = node.func.name
        if func in ("absent", "absent_over_time"):
            has_comparison = True  # absent() is a condition in itself
            if not rule.is_alert:
                problems.append(f"{rule}: {func}() in a recording rule; use it only in an alert "
                                "with a `for`")
            elif parse_duration(rule.data.get("for", "0s")) <= timedelta(0):
                problems.append(f"{rule}: {func}() without a `for`: it fires on every gap "
                                "and restart")
        if func not in RATE_FUNCTIONS:
            continue
        arg = node.args[0]
        if isinstance(arg, promql_parser.SubqueryExpr):
            if any(isinstance(n, promql_parser.AggregateExpr) for n in _walk(arg.expr)):
                problems.append(f"{rule}: {func}() over an aggregation ({func}(sum(...)[..:])): "
                                "aggregate after taking the rate, not before")
            else:
                problems.append(f"{rule}: {func}() over a subquery; apply it to a counter")
            continue
        if not isinstance(arg, promql_parser.MatrixSelector):
            continue
        name = _selector_name(arg.vector_selector) or ""
        if not name.endswith(COUNTER_SUFFIXES):
            problems.append(f"{rule}: {func}() on {name or 'a selector without a name'}, which "
                            f"is not a counter (counters end in {', '.join(COUNTER_SUFFIXES)})")
        if arg.range < min_range:
            problems.append(f"{rule}: {func}({name}[{promql_parser.display_duration(arg.range)}])"
                            f" range is shorter than 2x the scrape interval "
                            f"({promql_parser.display_duration(min_range)})")
    if rule.is_alert and not has_comparison:
        problems.append(f"{rule}: the alert expression has no comparison")
    return problems


def lint_rule(rule: Rule, *, min_range: timedelta, known: set[str] | None = None) -> list[str]:
    """What pint (and the monitoring-mixin habits) would flag in one rule."""
    problems = _problems_in_expr(rule, min_range)
    data = rule.data
    if rule.is_alert:
        if not ALERT_NAME.match(rule.name):
            problems.append(f"{rule}: alert name is not CamelCase")
        try:
            if parse_duration(data.get("for", "0s")) <= timedelta(0):
                problems.append(f"{rule}: alert has no `for`")
        except ValueError as exc:
            problems.append(f"{rule}: {exc}")
        labels = data.get("labels") or {}
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{rule}: severity {labels.get('severity')!r} is not one of "
                            f"{', '.join(SEVERITIES)}")
        for key, value in labels.items():
            if "$value" in str(value) or "{{" in str(value):
                problems.append(f"{rule}: label {key} is templated; labels must be static")
        annotations = data.get("annotations") or {}
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{rule}: annotation {key} is missing")
        if "{{" in str(annotations.get("summary", "")):
            problems.append(f"{rule}: summary is templated; keep it one static sentence")
        description = str(annotations.get("description", ""))
        if description and ("{{" not in description or "humanize" not in description):
            problems.append(f"{rule}: description should be templated and use humanize on $value")
        expected_url = RUNBOOK_URL.format(rule.name.lower())
        if annotations.get("runbook_url") and annotations["runbook_url"] != expected_url:
            problems.append(f"{rule}: runbook_url should be {expected_url}")
    else:
        if not RECORD_NAME.match(rule.name):
            problems.append(f"{rule}: recording rule name is not level:metric:operations")
        if "for" in data or "annotations" in data:
            problems.append(f"{rule}: recording rules take no `for` or annotations")
    if known is not None:
        try:
            unknown = selected_metrics(rule.expr) - known
        except ValueError:
            unknown = set()
        for name in sorted(unknown):
            problems.append(f"{rule}: selects {name}, which neither Vigil nor the demo target "
                            "exports and no rule records")
    return problems


def lint_rules(rules: list[Rule], *, min_range: timedelta, known: set[str]) -> list[str]:
    """Lint every rule; `known` is extended with every name the rules record."""
    recorded = {r.name for r in rules if not r.is_alert}
    problems = []
    seen: dict[str, Rule] = {}
    for rule in rules:
        problems += lint_rule(rule, min_range=min_range, known=known | recorded)
        if rule.is_alert:
            if rule.name in seen:
                problems.append(f"{rule}: alert name also defined in {seen[rule.name]}")
            seen[rule.name] = rule
    return problems


# --- what the watched services export ------------------------------------------------------

# Vigil's metric contract (DESIGN.md, "Metric contract"), as names Prometheus stores.
VIGIL_CONTRACT = {
    "vigil_check_success", "vigil_check_duration_seconds", "vigil_check_last_run_timestamp_seconds",
    "vigil_findings", "vigil_finding_info", "vigil_cors_preflight_allowed", "vigil_endpoint_up",
    "vigil_endpoint_latency_seconds", "vigil_schema_consistent", "vigil_schema_drift",
    "vigil_env_valid", "vigil_config_score", "vigil_build_info",
    "vigil_forecast", "vigil_forecast_threshold_eta_seconds", "vigil_forecast_anomaly",
    "vigil_forecast_fit_duration_seconds", "vigil_forecast_last_fit_timestamp_seconds",
    "vigil_forecast_errors_total",
    "vigil_webhook_notifications_total", "vigil_alerts_received_total",
    "vigil_remediation_attempts_total", "vigil_remediations_in_progress", "vigil_incidents_open",
    "vigil_circuit_breaker_state",
}
# Beyond the contract: the forecaster's own schedule metrics (docs/forecaster.md), which
# VigilForecastsStale compares; the live test checks the forecaster really exports them.
# And the remediator's count of stuck incidents (docs/remediator.md), for VigilRemediationStuck.
VIGIL_EXTRA = {"vigil_forecast_age_seconds", "vigil_forecast_retrain_interval_seconds",
               "vigil_remediation_stuck_incidents"}
VIGIL_HISTOGRAMS = {"vigil_remediation_duration_seconds", "vigil_incident_resolution_seconds"}
# Series every Prometheus target has.
SCRAPE_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
PROCESS_METRICS = {
    "process_resident_memory_bytes", "process_virtual_memory_bytes", "process_cpu_seconds_total",
    "process_open_fds", "process_max_fds", "process_start_time_seconds",
}


def _histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


def demo_target_metrics(doc: Path = REPO_ROOT / "docs" / "demo-target.md") -> set[str]:
    """The metric names docs/demo-target.md promises (its `## Metrics` section)."""
    text = doc.read_text()
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"`([a-z_][a-z0-9_]*)(?:\{[^`]*\})?`", section))
    for name in list(names):
        if name.endswith("_seconds") and "histogram" in section:
            names |= _histogram(name)
    return names


def exporter_sample_families() -> set[str]:
    """Per-check families the exporter declares (exposed only when a check emits them)."""
    try:
        from vigil.exporter.metrics import SAMPLE_FAMILIES
    except ImportError:
        return set()
    names = set(SAMPLE_FAMILIES)
    try:
        from vigil.exporter.schema import checks as schema_checks

        names |= set(re.findall(r'"(vigil_schema_[a-z_]+)"', Path(schema_checks.__file__).read_text()))
    except ImportError:
        pass
    return names


def known_metrics() -> set[str]:
    """Every name a rule may select without a live stack to ask."""
    names = set(VIGIL_CONTRACT) | VIGIL_EXTRA | SCRAPE_SERIES | PROCESS_METRICS | demo_target_metrics()
    for hist in VIGIL_HISTOGRAMS:
        names |= _histogram(hist)
    return names | exporter_sample_families()


# --- runbook ---------------------------------------------------------------------------------

def runbook_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to -."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


def runbook_anchors(runbook: Path = RULES_DIR / "runbook.md") -> dict[str, str]:
    """anchor -> the section's text, for every `## ` heading of the runbook."""
    sections: dict[str, str] = {}
    current = None
    for line in runbook.read_text().splitlines():
        if line.startswith("## "):
            current = runbook_anchor(line[3:])
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
    return sections


# --- time compression for tests on a 1 s stack ------------------------------------------------

def time_compressed_copy(dest: Path, *, alert_for: str = "1s",
                         paths: Iterable[Path] | None = None) -> list[Path]:
    """Copy the rule files into dest with every alert's `for` set to alert_for.

    The test stack scrapes and evaluates every second, but production alerts wait minutes
    (`for: 2m`). Expressions and range windows stay as they are, so only alerts whose
    expression has no long range (TargetConfigDrift, TargetDbPoolExhausted) fire promptly
    in such a copy; labels and annotations are unchanged.
    """
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for path in paths if paths is not None else rule_files():
        doc = yaml.safe_load(path.read_text())
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    rule["for"] = alert_for
        target = dest / path.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        out.append(target)
    return out
