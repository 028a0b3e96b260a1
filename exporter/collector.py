"""The exporter's prometheus_client Collector: fresh metric families from the runner's
latest results on every collect()."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from vigil.exporter.base import CheckResult, Severity
from vigil.exporter.metrics import family_info
from vigil.exporter.runner import CheckRunner
from vigil.exporter.score import config_score

from vigil import __version__

__all__ = ["ExporterCollector", "result_families"]

log = logging.getLogger("vigil.exporter")

TC = ["target", "check"]


def _cached_help(text: str, cached: set[tuple[str, str]], keys: Iterable[tuple[str, str]]) -> str:
    hits = sorted(f"{t}/{c}" for t, c in set(keys) & cached)
    if not hits:
        return text
    return f"{text} Served from cache (min_interval not passed) for: {', '.join(hits)}."


def result_families(
    results: list[CheckResult],
    *,
    targets: Iterable[str] = (),
    cached: set[tuple[str, str]] | None = None,
    max_finding_series: int = 200,
) -> Iterator[Metric]:
    """Metric families for a set of check results (shared by the exporter and tests)."""
    cached = cached or set()
    keys = [(r.target, r.check) for r in results]

    def fam(name: str, text: str, labels: list[str]) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, _cached_help(text, cached, keys), labels=labels)

    success = fam(
        "vigil_check_success",
        "1 when the check ran to completion (findings or not), 0 when it failed or timed out.",
        TC,
    )
    duration = fam("vigil_check_duration_seconds", "How long the check's last run took.", TC)
    last_run = fam(
        "vigil_check_last_run_timestamp_seconds", "Unix time the check's last run started.", TC
    )
    is_cached = GaugeMetricFamily(
        "vigil_check_cached",
        "1 when this scrape served the check from cache because its "
        "min_interval had not passed, else 0.",
        labels=TC,
    )
    findings = fam(
        "vigil_findings",
        "Active findings of the check, by severity.",
        ["target", "check", "severity"],
    )
    info = fam(
        "vigil_finding_info",
        "1 per active finding (capped per exporter; see vigil_finding_info_omitted).",
        ["target", "check", "rule", "severity", "subject"],
    )
    omitted = GaugeMetricFamily(
        "vigil_finding_info_omitted",
        "Findings left out of vigil_finding_info by the series cap.",
        labels=["target"],
    )
    samples: dict[str, list[tuple[CheckResult, dict[str, str], float]]] = defaultdict(list)
    shown = 0
    dropped: dict[str, int] = defaultdict(int)
    for r in results:
        lv = [r.target, r.check]
        success.add_metric(lv, 1.0 if r.success else 0.0)
        duration.add_metric(lv, r.duration_seconds)
        last_run.add_metric(lv, r.timestamp)
        is_cached.add_metric(lv, 1.0 if (r.target, r.check) in cached else 0.0)
        counts = {s: 0 for s in Severity}
        seen: set[tuple[str, str, str]] = set()
        for f in r.findings:
            counts[Severity(f.severity)] += 1
            key = (f.rule, Severity(f.severity).value, f.subject)
            if key in seen:
                continue
            seen.add(key)
            if shown < max_finding_series:
                info.add_metric([r.target, r.check, *key], 1.0)
                shown += 1
            else:
                dropped[r.target] += 1
        for sev, n in counts.items():
            findings.add_metric([*lv, sev.value], float(n))
        for metric, rows in r.samples.items():
            samples[metric] += [(r, labels, value) for labels, value in rows]
    for t in {r.target for r in results} | set(targets):
        omitted.add_metric([t], float(dropped.get(t, 0)))
    yield from (success, duration, last_run, is_cached, findings, info, omitted)
    for metric, rows in sorted(samples.items()):
        text, labelnames = family_info(metric, rows[0][1])
        owners = {(r.target, r.check) for r, _, _ in rows}
        family = GaugeMetricFamily(
            metric,
            _cached_help(text, cached, owners) if owners & cached else text,
            labels=list(labelnames),
        )
        seen_lv: set[tuple[str, ...]] = set()
        for _, labels, value in rows:
            if set(labels) != set(labelnames):
                continue  # a malformed sample never breaks the exposition
            row_key = tuple(labels[n] for n in labelnames)
            if row_key not in seen_lv:
                seen_lv.add(row_key)
                family.add_metric(list(row_key), value)
        yield family
    score = GaugeMetricFamily(
        "vigil_config_score",
        "0-100: the share of the target's checks passing, each check "
        "weighted down by its worst finding (critical 1, warning 0.5, info 0.1; a check that "
        "cannot run counts as failed). See docs/exporter.md.",
        labels=["target"],
    )
    by_target: dict[str, list[CheckResult]] = defaultdict(list)
    for r in results:
        by_target[r.target].append(r)
    for t in sorted(set(by_target) | set(targets)):
        score.add_metric([t], config_score(by_target.get(t, [])))
    yield score


class ExporterCollector(Collector):
    """Collect on scrape: the runner's results as fresh families, plus the exporter's own."""

    def __init__(self, runner: CheckRunner, targets: list[str], max_finding_series: int = 200):
        self.runner = runner
        self.targets = targets
        self.max_finding_series = max_finding_series
        self.collect_errors = 0

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "vigil_build_info", "Vigil's version; always 1.", labels=["version"]
        )
        build.add_metric([__version__], 1.0)
        yield build
        try:  # build fully first: a bug here must cost these families, not the scrape
            families = list(
                result_families(
                    self.runner.results(),
                    targets=self.targets,
                    cached=self.runner.cached_keys(),
                    max_finding_series=self.max_finding_series,
                )
            )
        except Exception:
            log.exception("building the check result families failed")
            self.collect_errors += 1
            families = []
        yield from families
        yield CounterMetricFamily(
            "vigil_exporter_collect_errors",
            "Scrapes whose check-result families could not be built (see the exporter log).",
            value=float(self.collect_errors),
        )
        runs = CounterMetricFamily(
            "vigil_exporter_check_runs",
            "Check runs started by scrapes (cache hits excluded).",
            labels=TC,
        )
        errors = CounterMetricFamily(
            "vigil_exporter_check_errors", "Check runs that failed or timed out.", labels=TC
        )
        for slot in self.runner.slots:
            key = (slot.check.target, slot.check.name)
            runs.add_metric(list(key), float(self.runner.runs[key]))
            errors.add_metric(list(key), float(self.runner.failures[key]))
        yield runs
        yield errors
        yield CounterMetricFamily(
            "vigil_exporter_scrapes",
            "Scrapes of /metrics that ran the checks.",
            value=float(self.runner.scrapes),
        )
        yield GaugeMetricFamily(
            "vigil_exporter_refresh_duration_seconds",
            "How long the last scrape spent bringing check results up to date.",
            value=self.runner.last_refresh_seconds,
        )
