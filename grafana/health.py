"""System health overview: the target's traffic, errors, latency and SLO, alerts, and Vigil itself."""

from __future__ import annotations

from typing import Any

from vigil.grafana.common import (
    TARGET_JOB,
    assemble,
    new_dashboard,
    prom,
    row,
    stat,
    table,
    thresholds,
    timeseries,
    transformation,
    units,
)

__all__ = ["UID", "dashboard"]

UID = "vigil-health"

# Vigil's generic HTTP signals (rules/http.rules.yml), whatever library the service uses.
_RATE_BY_ROUTE = f"job_route:http_requests:rate5m{{{TARGET_JOB}}}"
_ERROR_RATIO = f"job:http_request_errors:ratio_rate5m{{{TARGET_JOB}}}"


def request_rate() -> Any:
    return timeseries(
        "Request rate", "Requests per second served by the target, per route (5m rate).",
        units.RequestsPerSecond,
        prom(f"sum by (route) ({_RATE_BY_ROUTE})", "{{route}}"),
        w=8, stack=True)


def error_ratio() -> Any:
    return timeseries(
        "Error ratio", "Share of requests answered with a 5xx status.", units.PercentUnit,
        prom(_ERROR_RATIO, "5xx ratio"),
        w=8, min_val=0)


def latency_quantiles() -> Any:
    quantiles = "job_quantile:http_request_duration_seconds:histogram_quantile_5m"
    return timeseries(
        "Latency quantiles", "p50, p90 and p99 request latency from the target's histogram (5m).",
        units.Seconds,
        *(prom(f'{quantiles}{{{TARGET_JOB},quantile="{q}"}}', f"p{int(q * 100)}", ref=ref)
          for q, ref in ((0.5, "A"), (0.9, "B"), (0.99, "C"))),
        w=8)


def slo_burn_rate() -> Any:
    # The windows and the objective are the rules' (rules/slo.rules.yml), so the panel shows
    # exactly what the burn-rate alerts compare against 14.4 and 6.
    return timeseries(
        "SLO burn rate",
        "How fast the availability error budget burns: 1 spends it exactly over 30 days; "
        "the fast-burn page fires at 14.4 (1h and 5m) or 6 (6h and 30m).",
        units.NoUnit,
        *(prom(f"job:slo_burn_rate:ratio_rate{window}{{{TARGET_JOB}}}", window, ref=ref)
          for window, ref in (("5m", "A"), ("1h", "B"), ("6h", "C"))),
        w=12, min_val=0)


def error_budget_left() -> Any:
    return stat(
        "Error budget left (30d)",
        "Share of the 30-day error budget not yet spent; negative means the SLO is broken.",
        units.PercentUnit,
        prom(f"job:slo_error_budget_remaining:ratio_rate30d{{{TARGET_JOB}}}", "budget left",
             instant=True),
        steps=thresholds((None, "red"), (0.25, "orange"), (0.5, "green")), w=4, h=8)


def slo_objective() -> Any:
    return stat(
        "SLO objective", "Share of requests that must succeed over 30 days (set in "
        "rules/slo.rules.yml).", units.PercentUnit,
        prom("vigil:slo_objective:ratio", "objective", instant=True), w=4, h=8, decimals=2)


def target_up() -> Any:
    return stat(
        "Target up", "Whether Prometheus can scrape the target.", units.NoUnit,
        prom(f"min(up{{{TARGET_JOB}}})", "up", instant=True),
        steps=thresholds((None, "red"), (1, "green")), w=4, h=8)


def alerts_firing() -> Any:
    return table(
        "Alerts firing", "Alerts Prometheus fires now, with their severity and remediation route.",
        units.NoUnit,
        prom('sum by (alertname, severity, remediation) (ALERTS{alertstate="firing"})',
             instant=True, table_format=True),
        transformations=[transformation("organize", {
            "excludeByName": {"Time": True},
            "renameByName": {"Value": "series"},
        })],
        sort_by=("severity", False), w=12, h=8)


def alerts_over_time() -> Any:
    return timeseries(
        "Alerts firing by severity", "Number of firing alert series per severity.", units.Short,
        prom('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}"),
        w=12, h=8, stack=True)


def vigil_components_up() -> Any:
    return stat(
        "Vigil components up", "Scrape health of the exporter, forecaster and remediator.",
        units.NoUnit, prom('up{job=~"vigil-.*"}', "{{job}} {{instance}}", instant=True),
        steps=thresholds((None, "red"), (1, "green")), w=12, h=4)


def vigil_version() -> Any:
    return table(
        "Vigil build", "Versions of the running Vigil components.", units.NoUnit,
        prom("count by (job, version) (vigil_build_info)", instant=True, table_format=True),
        transformations=[transformation("organize", {
            "excludeByName": {"Time": True, "Value": True}})],
        w=12, h=4)


def webhook_notifications() -> Any:
    return timeseries(
        "Remediator webhook notifications",
        "Alertmanager notifications the remediator accepted or refused, per second.",
        units.OpsPerSecond,
        prom("sum by (result) (rate(vigil_webhook_notifications_total[$__rate_interval]))",
             "{{result}}"),
        w=8)


def check_failures() -> Any:
    return timeseries(
        "Exporter checks failing", "Checks that could not run to completion, per target.",
        units.Short,
        prom("count by (target) (vigil_check_success == 0) or count by (target) "
             "(vigil_check_success) * 0", "{{target}}"),
        w=8, min_val=0)


def forecast_errors() -> Any:
    return timeseries(
        "Forecaster errors", "Failed forecast runs per second, per forecast.", units.OpsPerSecond,
        prom("sum by (forecast) (rate(vigil_forecast_errors_total[$__rate_interval]))",
             "{{forecast}}"),
        w=8, min_val=0)


def scrape_duration() -> Any:
    return timeseries(
        "Scrape duration", "How long Prometheus takes to scrape each Vigil component and the "
        "target; a slow exporter scrape means checks served late.", units.Seconds,
        prom(f'scrape_duration_seconds{{job=~"vigil-.*"}} or scrape_duration_seconds{{{TARGET_JOB}}}',
             "{{job}}"),
        w=24)


def dashboard() -> dict[str, Any]:
    """Build the system health overview."""
    board = new_dashboard(
        "Vigil / System health", UID,
        "The watched target's traffic, errors and latency, its SLO, the alerts firing, and "
        "the health of Vigil's own services.")
    return assemble(board, [
        row("Target service"), request_rate(), error_ratio(), latency_quantiles(),
        row("SLO"), slo_burn_rate(), error_budget_left(), slo_objective(), target_up(),
        row("Alerts"), alerts_firing(), alerts_over_time(),
        row("Vigil"), vigil_components_up(), vigil_version(), webhook_notifications(),
        check_failures(), forecast_errors(), scrape_duration(),
    ])
