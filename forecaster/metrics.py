"""Publish the engine's state as Prometheus metrics, fresh families on every scrape."""

from __future__ import annotations

import math
from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from vigil.forecaster.engine import Engine

__all__ = ["ForecastCollector"]


class ForecastCollector(Collector):
    """Collector for vigil_forecast* metrics; see docs/forecaster.md for each name."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterable[Metric]:
        snap = self.engine.snapshot()
        now = self.engine.clock()
        series_keys = sorted({k for f in snap for s in f["series"] for k in s["labels"]})
        fc = GaugeMetricFamily(
            "vigil_forecast", "Forecast at the current time: bound is yhat, yhat_lower or "
            "yhat_upper. Served from the last fit while Prometheus is unreachable.",
            labels=["forecast", "bound", *series_keys])
        eta = GaugeMetricFamily(
            "vigil_forecast_threshold_eta_seconds", "Seconds until the forecast band first "
            "crosses the threshold within the horizon; +Inf when it does not.",
            labels=["forecast", *series_keys])
        anomaly = GaugeMetricFamily(
            "vigil_forecast_anomaly", "1 when at least anomaly_points of the last anomaly_window "
            "actual points fell outside the forecast band.", labels=["forecast", *series_keys])
        duration = GaugeMetricFamily("vigil_forecast_fit_duration_seconds",
                                     "Wall time of the last fit of all of a forecast's series.",
                                     labels=["forecast"])
        last_fit = GaugeMetricFamily("vigil_forecast_last_fit_timestamp_seconds",
                                     "Unix time of the last successful fit.", labels=["forecast"])
        age = GaugeMetricFamily("vigil_forecast_age_seconds",
                                "Seconds since the last successful fit (grows while Prometheus "
                                "is unreachable and old forecasts are served).",
                                labels=["forecast"])
        last_read = GaugeMetricFamily("vigil_forecast_last_read_timestamp_seconds",
                                      "Unix time of the last successful read from Prometheus.",
                                      labels=["forecast"])
        errors = CounterMetricFamily("vigil_forecast_errors",
                                     "Failed reads from Prometheus and failed fits.",
                                     labels=["forecast"])
        retrain = GaugeMetricFamily("vigil_forecast_retrain_interval_seconds",
                                    "How often the forecast is refitted (its retrain_interval); "
                                    "VigilForecastsStale compares vigil_forecast_age_seconds "
                                    "with it.", labels=["forecast"])
        for cfg in self.engine.config.forecasts:
            retrain.add_metric([cfg.name], cfg.retrain_interval)
        count = GaugeMetricFamily("vigil_forecast_series",
                                  "Series per status: ok, insufficient_history, error, pending.",
                                  labels=["forecast", "status"])
        for f in snap:
            name = f["name"]
            statuses: dict[str, int] = {"ok": 0, "insufficient_history": 0, "error": 0,
                                        "pending": 0}
            for s in f["series"]:
                statuses[s["status"]] = statuses.get(s["status"], 0) + 1
                lv = [s["labels"].get(k, "") for k in series_keys]
                if "yhat" not in s:
                    continue
                for bound in ("yhat", "yhat_lower", "yhat_upper"):
                    if not math.isnan(s[bound]):
                        fc.add_metric([name, bound, *lv], s[bound])
                if f["threshold"] is not None:
                    eta.add_metric([name, *lv], s["threshold_eta_seconds"])
                anomaly.add_metric([name, *lv], 1.0 if s["anomaly"] else 0.0)
            for status, n in statuses.items():
                count.add_metric([name, status], n)
            duration.add_metric([name], f["fit_duration_seconds"])
            # A forecast never fitted yet (too little history) has no last-fit time: a 0 here
            # would read as "last fitted in 1970" and fire VigilForecastsStale at once.
            if f["last_fit_timestamp"]:
                last_fit.add_metric([name], f["last_fit_timestamp"])
                age.add_metric([name], max(0.0, now - f["last_fit_timestamp"]))
            last_read.add_metric([name], f["last_read_timestamp"])
            errors.add_metric([name], f["errors_total"])
        yield from (fc, eta, anomaly, duration, last_fit, age, retrain, last_read, errors, count)
