"""The pint-style lint: each check catches its mistake, and Vigil's rules pass all of them."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.rules.rulefiles import (
    Rule,
    known_metrics,
    lint_rule,
    lint_rules,
    load_rules,
    min_rate_range,
    parse_duration,
    selected_metrics,
)

MIN_RANGE = timedelta(minutes=1)
KNOWN = {"http_requests_total", "http_request_duration_seconds_bucket", "demo_config_drift", "up",
         "process_resident_memory_bytes", "job:http_requests:rate5m"}


def alert(expr: str, **over: Any) -> Rule:
    data: dict[str, Any] = {
        "alert": "DemoBroken", "expr": expr, "for": "5m", "labels": {"severity": "warning"},
        "annotations": {"summary": "The demo is broken.",
                        "description": "{{ $labels.job }} is at {{ $value | humanize }}.",
                        "runbook_url": "rules/runbook.md#alert-name-demobroken"},
    }
    data.update(over)
    return Rule(Path("x.rules.yml"), "g", data)


def record(name: str, expr: str) -> Rule:
    return Rule(Path("x.rules.yml"), "g", {"record": name, "expr": expr})


def problems(rule: Rule, known: set[str] | None = KNOWN) -> list[str]:
    return lint_rule(rule, min_range=MIN_RANGE, known=known)


def test_a_good_alert_passes() -> None:
    assert problems(alert("sum by (job) (rate(http_requests_total[5m])) > 1")) == []


@pytest.mark.parametrize(("expr", "needle"), [
    ("rate(process_resident_memory_bytes[5m]) > 0", "not a counter"),
    ("increase(demo_config_drift[5m]) > 0", "not a counter"),
    ("rate(http_requests_total[30s]) > 0", "shorter than 2x the scrape interval"),
    ("rate(sum(http_requests_total)[5m:1m]) > 0", "over an aggregation"),
    ("up", "no comparison"),
    ("sum(rate(http_requests_total[5m])) > 1 and nope_total > 0", "selects nope_total"),
    ("rate(http_requests_total[5m]) >", "does not parse"),
])
def test_expression_mistakes_are_flagged(expr: str, needle: str) -> None:
    found = problems(alert(expr))
    assert any(needle in p for p in found), found


def test_absent_needs_a_for() -> None:
    assert problems(alert("absent(up{job='demo'})", **{"for": "5m"})) == []
    found = problems(alert("absent(up{job='demo'})", **{"for": "0s"}))
    assert any("absent() without a `for`" in p for p in found), found
    found = problems(record("job:up:absent", "absent(up)"))
    assert any("absent() in a recording rule" in p for p in found), found


@pytest.mark.parametrize(("over", "needle"), [
    ({"alert": "demo_broken"}, "not CamelCase"),
    ({"for": "0s"}, "has no `for`"),
    ({"labels": {"severity": "page"}}, "severity 'page'"),
    ({"labels": {"severity": "warning", "value": "{{ $value }}"}}, "templated"),
    ({"annotations": {"summary": "s", "description": "{{ $value | humanize }}"}},
     "runbook_url is missing"),
    ({"annotations": {"summary": "{{ $labels.job }} broke", "description": "{{ $value | humanize }}",
                      "runbook_url": "rules/runbook.md#alert-name-demobroken"}}, "summary is templated"),
    ({"annotations": {"summary": "s", "description": "the job broke",
                      "runbook_url": "rules/runbook.md#alert-name-demobroken"}}, "use humanize"),
    ({"annotations": {"summary": "s", "description": "{{ $value | humanize }}",
                      "runbook_url": "https://example.com/runbook"}}, "runbook_url should be"),
])
def test_alert_shape_mistakes_are_flagged(over: dict[str, Any], needle: str) -> None:
    found = problems(alert("up == 0", **over))
    assert any(needle in p for p in found), found


def test_recording_rule_names_follow_level_metric_operations() -> None:
    assert problems(record("job:http_requests:rate5m", "sum by (job) (rate(http_requests_total[5m]))")) == []
    found = problems(record("http_requests_rate", "sum by (job) (rate(http_requests_total[5m]))"))
    assert any("level:metric:operations" in p for p in found), found


def test_recorded_names_count_as_known_and_duplicates_are_flagged() -> None:
    rules = [record("job:things:rate5m", "sum by (job) (rate(http_requests_total[5m]))"),
             alert("job:things:rate5m > 1"), alert("job:things:rate5m > 2")]
    found = lint_rules(rules, min_range=MIN_RANGE, known={"http_requests_total"})
    assert [p for p in found if "selects" in p] == []
    assert any("also defined" in p for p in found), found


def test_selected_metrics_include_name_matchers() -> None:
    assert selected_metrics('sum(rate({__name__="a_total"}[5m])) / b') == {"a_total", "b"}


def test_parse_duration() -> None:
    assert parse_duration("1h30m") == timedelta(minutes=90)
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_min_rate_range_is_twice_the_longest_scrape_interval() -> None:
    # deploy/prometheus.yml scrapes the exporter every 30s; the global interval is 15s.
    assert min_rate_range() >= timedelta(seconds=60)


def test_vigil_rules_pass_the_lint() -> None:
    rules = load_rules()
    assert len(rules) > 30
    found = lint_rules(rules, min_range=min_rate_range(), known=known_metrics())
    assert found == [], "\n".join(found)
