"""Predictions: the forecaster's bands against the actual series, time-to-threshold, anomalies.

One "actual against forecast" panel per forecast of the forecaster's config file (the bundled
deploy/forecasts.yml by default): the panel plots the forecast's own PromQL query as the
actual series, so rebuild the dashboards after changing the forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from vigil.grafana.common import (
    TARGET_JOB,
    assemble,
    bar_gauge,
    new_dashboard,
    prom,
    row,
    state_timeline,
    table,
    thresholds,
    timeseries,
    transformation,
    units,
    value_map,
)

from vigil.paths import DEPLOY_DIR

__all__ = ["DEFAULT_FORECASTS_FILE", "UID", "ForecastPanelSpec", "dashboard", "load_forecasts"]

UID = "vigil-predictions"
DEFAULT_FORECASTS_FILE = DEPLOY_DIR / "forecasts.yml"


@dataclass(frozen=True)
class ForecastPanelSpec:
    """What a forecast panel needs from the forecaster's config."""

    name: str
    query: str
    threshold: float | None = None
    threshold_query: str | None = None
    direction: str = "above"


def load_forecasts(path: Path | None = None) -> list[ForecastPanelSpec]:
    """Read name, query and threshold of every forecast.

    [] when no path is given and the default file does not exist; a path given explicitly
    must exist and be valid (ConfigError otherwise).
    """
    if path is None:
        if not DEFAULT_FORECASTS_FILE.exists():
            return []
        path = DEFAULT_FORECASTS_FILE
    from vigil.forecaster.config import load_config  # validates the file the same way

    config = load_config(path)
    specs = []
    for forecast in config.forecasts:
        threshold = forecast.threshold
        query = threshold.query if threshold and threshold.query else None
        specs.append(ForecastPanelSpec(
            name=forecast.name, query=" ".join(forecast.query.split()),
            threshold=threshold.value if threshold else None,
            threshold_query=" ".join(query.split()) if query else None,
            direction=threshold.direction if threshold else "above"))
    return specs


def forecast_vs_actual(spec: ForecastPanelSpec) -> Any:
    """The actual series (the forecast's query), the yhat line and the shaded band."""
    selector = f'vigil_forecast{{forecast="{spec.name}"'
    panel = timeseries(
        f"{spec.name}: actual against forecast",
        f"Actual: `{spec.query}`. The band is the forecaster's yhat_lower..yhat_upper at each "
        "instant; the red dashed line is the threshold.",
        units.Short,
        prom(spec.query, "actual", ref="A"),
        prom(f'{selector},bound="yhat"}}', "forecast", ref="B"),
        prom(f'{selector},bound="yhat_lower"}}', "lower", ref="C"),
        prom(f'{selector},bound="yhat_upper"}}', "upper", ref="D"),
        w=12, h=8)
    panel = (panel.override_by_name("upper", _band_fill())
             .override_by_name("lower", [dash_m.DynamicConfigValue(id_val="custom.lineWidth",
                                                                   value=0)])
             .override_by_name("forecast", [dash_m.DynamicConfigValue(
                 id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})]))
    if spec.threshold_query is not None:
        # the forecaster reads the threshold from this query each cycle; plot the same series
        panel = (panel.with_target(prom(spec.threshold_query, "threshold", ref="E"))
                 .override_by_name("threshold", [dash_m.DynamicConfigValue(
                     id_val="custom.lineStyle", value={"fill": "dash", "dash": [4, 4]}),
                     dash_m.DynamicConfigValue(id_val="color",
                                               value={"mode": "fixed", "fixedColor": "red"})]))
    elif spec.threshold is not None:
        panel = (panel.thresholds(thresholds((None, "transparent"), (spec.threshold, "red")))
                 .thresholds_style(common_b.GraphThresholdsStyleConfig()
                                   .mode(common_m.GraphTresholdsStyleMode.DASHED)))
    return panel


def time_to_threshold() -> Any:
    return table(
        "Predicted time to threshold, soonest first",
        "Seconds until the forecast band first crosses its threshold within the horizon. "
        "Infinity: no crossing is forecast.",
        units.DurationSeconds,
        prom("sort(vigil_forecast_threshold_eta_seconds)", instant=True, table_format=True),
        transformations=[transformation("organize", {
            "excludeByName": {"Time": True, "__name__": True},
            "renameByName": {"Value": "time to threshold"},
        })],
        sort_by=("time to threshold", False), w=24, h=8)


def anomaly_flags() -> Any:
    return state_timeline(
        "Anomaly flags", "1 while the actual value stays outside the band (persistence rule "
        "in docs/forecaster.md).",
        prom("max by (forecast) (vigil_forecast_anomaly)", "{{forecast}}"),
        mappings=value_map({"0": ("normal", "green"), "1": ("anomaly", "red")}),
        steps=thresholds((None, "green"), (1, "red")), w=24, h=8)


def forecast_age() -> Any:
    return bar_gauge(
        "Forecast freshness", "Seconds since each forecast was last fitted; an old forecast "
        "means Prometheus was unreachable or the fit failed.", units.Seconds,
        prom("max by (forecast) (vigil_forecast_age_seconds)", "{{forecast}}", instant=True),
        steps=thresholds((None, "green"), (3600, "orange"), (7200, "red")), w=6, h=8)


def series_status() -> Any:
    return bar_gauge(
        "Series by status", "Series per forecast: ok, insufficient_history (reported, not "
        "forecast), error or pending.", units.Short,
        prom("sum by (forecast, status) (vigil_forecast_series)", "{{forecast}} {{status}}",
             instant=True),
        w=6, h=8)


def fit_cost() -> Any:
    return timeseries(
        "Fit cost", "Wall time of the last fit of each forecast.", units.Seconds,
        prom("max by (forecast) (vigil_forecast_fit_duration_seconds)", "{{forecast}}"),
        w=6, h=8)


def forecast_errors() -> Any:
    return timeseries(
        "Forecast errors", "Failed fits and queries per second, per forecast.",
        units.OpsPerSecond,
        prom("sum by (forecast) (rate(vigil_forecast_errors_total[$__rate_interval]))",
             "{{forecast}}"),
        w=6, h=8, min_val=0)


# the resource signals carry the service as `target` (rules/signals.rules.yml)
TARGET = 'target="$target"'


def memory_trend() -> Any:
    used = f"target:memory_used:bytes{{{TARGET}}}"
    return timeseries(
        "Memory: linear trend against the limit",
        "Memory used, its predict_linear one hour ahead, and the limit the memory "
        "exhaustion rule compares against (Vigil's generic signals).", units.BytesIEC,
        prom(used, "used {{instance}}", ref="A"),
        prom(f"predict_linear({used}[30m], 3600)", "in 1h {{instance}}", ref="B"),
        prom(f"target:memory_limit:bytes{{{TARGET}}}", "limit", ref="C"),
        w=12, h=8)


def disk_trend() -> Any:
    usage = f"target:disk_used:bytes{{{TARGET}}}"
    return timeseries(
        "Disk: linear trend against capacity",
        "Data volume usage, its predict_linear four hours ahead, and the capacity.",
        units.BytesIEC,
        prom(usage, "used {{instance}}", ref="A"),
        prom(f"predict_linear({usage}[1h], 4 * 3600)", "in 4h {{instance}}", ref="B"),
        prom(f"target:disk_capacity:bytes{{{TARGET}}}", "capacity", ref="C"),
        w=12, h=8)


def request_rate_band() -> Any:
    # The rules record the band only after a day of history (rules/anomaly.rules.yml).
    return timeseries(
        "Request rate against its z-score band",
        "The 5m request rate, its one-week mean +/- 3 standard deviations, and the weekly "
        "seasonal prediction, as recorded by the anomaly rules (empty for the first day).",
        units.RequestsPerSecond,
        prom(f"job:http_requests:rate5m{{{TARGET_JOB}}}", "rate", ref="A"),
        prom(f"job:http_requests:rate5m:upper_band_1w{{{TARGET_JOB}}}", "upper", ref="B"),
        prom(f"job:http_requests:rate5m:lower_band_1w{{{TARGET_JOB}}}", "lower", ref="C"),
        prom(f"job:http_requests:rate5m:seasonal_prediction{{{TARGET_JOB}}}", "seasonal",
             ref="D"),
        w=24, h=8).override_by_name("upper", _band_fill())


def _band_fill() -> list[dash_m.DynamicConfigValue]:
    return [dash_m.DynamicConfigValue(id_val="custom.fillBelowTo", value="lower"),
            dash_m.DynamicConfigValue(id_val="custom.lineWidth", value=0),
            dash_m.DynamicConfigValue(id_val="custom.fillOpacity", value=20)]


def dashboard(forecasts_file: Path | None = None) -> dict[str, Any]:
    """Build the predictions dashboard from the forecaster's config file."""
    board = new_dashboard(
        "Vigil / Predictions", UID,
        "The forecaster's bands against the actual series, predicted time to each threshold, "
        "anomaly flags, forecast freshness and fit cost, and Prometheus' linear trends.")
    forecasts = load_forecasts(forecasts_file)
    panels: list[Any] = [row("Time to threshold"), time_to_threshold(), anomaly_flags()]
    if forecasts:
        panels += [row("Forecast against actual")]
        panels += [forecast_vs_actual(spec) for spec in forecasts]
    panels += [row("Trends"), memory_trend(), disk_trend(), request_rate_band(),
               row("Forecaster"), forecast_age(), series_status(), fit_cost(), forecast_errors()]
    return assemble(board, panels)
