"""The forecasting loop: read each forecast's series, refit when due, evaluate anomalies.

The engine is synchronous and owns no event loop; the service runs `run_cycle` in a thread
and the collector reads `snapshot()`. State survives an unreachable Prometheus: the last
forecasts keep being served and their age grows.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import BrokenExecutor, Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from vigil.forecaster.config import ForecastConfig, ForecasterConfig
from vigil.forecaster.detectors import Ring, judge_points
from vigil.forecaster.model import (
    FitRequest,
    FitResult,
    band_at,
    calibrate,
    fit_series,
    shard_of,
    threshold_eta,
    widen_at,
)
from vigil.forecaster.promapi import (
    PrometheusClient,
    PrometheusError,
    PrometheusUnavailable,
    Series,
    clean_series,
    looks_like_counter,
)

__all__ = ["Engine", "ForecastState", "Ring", "SeriesState", "series_labels"]

log = logging.getLogger("vigil.forecaster.engine")

RESERVED = ("forecast", "bound")


def series_labels(labels: dict[str, str]) -> dict[str, str]:
    """Labels to publish for a series: no __name__, clashes renamed to exported_<name>."""
    out: dict[str, str] = {}
    for key, value in labels.items():
        if key == "__name__":
            continue
        out[f"exported_{key}" if key in RESERVED else key] = value
    return out


@dataclass
class SeriesState:
    """What the engine knows about one series of one forecast."""

    labels: dict[str, str]
    status: str = "pending"  # ok | insufficient_history | error | pending
    detail: str = ""
    result: FitResult | None = None
    # result with its band calibrated on the out-of-sample residuals (what is published)
    band: FitResult | None = None
    outside: deque[bool] = field(default_factory=lambda: deque(maxlen=64))
    # horizon-normalised out-of-sample residuals: `residuals` calibrate the band, `pending`
    # wait there until the persistence rule has judged them (anomalies join clipped)
    residuals: Ring = field(default_factory=lambda: Ring(576))
    pending: deque[list[Any]] = field(default_factory=deque)  # [residual, outside, flagged, calm]
    halfwidth: float | None = None  # conformal half-width of `residuals` (published band)
    anomaly_halfwidth: float | None = None  # the same at `anomaly_coverage` (judged band)
    # those of them judged while the flag was down: 1.4826 * their MAD is the judged
    # band's floor (`robust_sd`)
    typical: Ring = field(default_factory=lambda: Ring(576))
    robust_sd: float | None = None
    evaluated_until: float = 0.0
    anomaly: bool = False
    held: int = 0  # points the anomaly flag is still held up for (anomaly_hold)
    rearm: int = 0  # points before the flag may rise anew (anomaly_refractory)
    last_value: float = math.nan
    last_value_ts: float = 0.0
    history_seconds: float = 0.0
    threshold: float | None = None

    @classmethod
    def for_config(cls, labels: dict[str, str], cfg: ForecastConfig, **kw: Any) -> SeriesState:
        """A new series' state with its calibration rings sized by `calibration_window`."""
        return cls(labels, residuals=Ring(cfg.calibration_window),
                   typical=Ring(cfg.calibration_window), **kw)


@dataclass
class ForecastState:
    """Per-forecast bookkeeping published as metrics and JSON."""

    config: ForecastConfig
    series: dict[tuple[tuple[str, str], ...], SeriesState] = field(default_factory=dict)
    last_fit: float = 0.0
    last_fit_attempt: float = 0.0
    fit_duration: float = 0.0
    last_read: float = 0.0
    errors_total: int = 0
    last_error: str = ""


class Engine:
    """Runs forecast cycles against Prometheus, fitting series in the given executor."""

    def __init__(self, config: ForecasterConfig, *, client: PrometheusClient | None = None,
                 executor: Executor | None = None, shard: tuple[int, int] = (0, 1),
                 executor_factory: Callable[[], Executor] | None = None,
                 clock: Callable[[], float] = time.time,
                 fit: Callable[[FitRequest], FitResult] = fit_series) -> None:
        self.config = config
        self.fit = fit  # in-process fits (the backtest passes a caching fit_series)
        self.client = client or PrometheusClient(config.prometheus)
        self.executor = executor
        # when a worker dies (OOM kill, segfault in Stan) the pool is broken for good:
        # with a factory the engine replaces it instead of failing every later cycle
        self.executor_factory = executor_factory
        self.shard = shard
        self.clock = clock
        self.lock = threading.Lock()
        self.forecasts = {f.name: ForecastState(f) for f in config.forecasts}
        self.cycles = 0

    # --- the loop --------------------------------------------------------------------------
    def run_cycle(self, now: float | None = None) -> None:
        """Read, refit when due, and evaluate every forecast once."""
        now = self.clock() if now is None else now
        for state in self.forecasts.values():
            self._run_forecast(state, now)
        self.cycles += 1

    def _fit_all(self, requests: list[FitRequest]) -> Iterable[FitResult]:
        if self.executor is None and self.executor_factory is not None:
            self.executor = self.executor_factory()
        if self.executor is None or len(requests) <= 1:
            return [self.fit(r) for r in requests]
        try:
            return list(self.executor.map(fit_series, requests))
        except BrokenExecutor:
            log.error("fit worker pool broke; replacing it and retrying this batch once")
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self.executor_factory() if self.executor_factory else None
            if self.executor is None:
                raise
            try:
                return list(self.executor.map(fit_series, requests))
            except BrokenExecutor:
                self.executor.shutdown(wait=False, cancel_futures=True)
                self.executor = None  # the next cycle builds a fresh pool
                return [FitResult(r.forecast, r.labels, 0.0, *([np.array([])] * 4),
                                  error="fit worker died") for r in requests]

    def _run_forecast(self, state: ForecastState, now: float) -> None:
        cfg = state.config
        try:
            raw = self.client.query_range(cfg.query, now - cfg.history, now, cfg.step)
        except (PrometheusUnavailable, PrometheusError) as exc:
            with self.lock:
                state.errors_total += 1
                state.last_error = str(exc)
            log.warning("forecast %s: read failed: %s", cfg.name, exc)
            return
        index, shards = self.shard
        current: dict[tuple[tuple[str, str], ...], tuple[Series, np.ndarray, np.ndarray]] = {}
        for series in raw:
            if shards > 1 and shard_of(cfg.name, series.labels, shards) != index:
                continue
            counter = cfg.counter == "auto" and looks_like_counter(
                series.labels.get("__name__", ""), series.values[np.isfinite(series.values)])
            ts, vs = clean_series(series.timestamps, series.values, counter=counter)
            if not len(ts) or ts[-1] < now - max(3 * cfg.step, 300.0):
                continue  # vanished: no sample lately, so it is no longer published
            current[series.key] = (series, ts, vs)
        limits = self._threshold_values(state, now)
        due = now - state.last_fit_attempt >= cfg.retrain_interval
        fit_requests: list[FitRequest] = []
        with self.lock:
            state.last_read = now
            for key in list(state.series):  # series that vanished stop being published
                if key not in current:
                    del state.series[key]
            for key, (series, ts, vs) in current.items():
                st = state.series.get(key)
                if st is None:
                    st = state.series[key] = SeriesState.for_config(
                        series_labels(series.labels), cfg)
                st.threshold = self._match_threshold(cfg, series.labels, limits)
                st.history_seconds = float(ts[-1] - ts[0]) if len(ts) > 1 else 0.0
                if len(ts):
                    st.last_value, st.last_value_ts = float(vs[-1]), float(ts[-1])
                if len(ts) < 3 or st.history_seconds < cfg.min_history:
                    st.status = "insufficient_history"
                    st.detail = (f"{st.history_seconds:.0f}s of history, "
                                 f"need {cfg.min_history:.0f}s")
                    continue
                if due or st.result is None:
                    params = st.result.params if st.result is not None else None
                    fit_requests.append(FitRequest(
                        cfg.name, dict(series.labels), ts, vs, cfg.step, cfg.horizon,
                        cfg.interval_width, cfg.seasonality.daily, cfg.seasonality.weekly,
                        cfg.seasonality.yearly, cfg.max_fit_points, params))
        if fit_requests:
            started = time.perf_counter()
            results = list(self._fit_all(fit_requests))
            duration = time.perf_counter() - started
            with self.lock:
                state.last_fit_attempt = now
                state.fit_duration = duration
                ok = 0
                for res in results:
                    found = state.series.get(tuple(sorted(res.labels.items())))
                    if found is None:
                        continue
                    st = found
                    if res.error:
                        state.errors_total += 1
                        state.last_error = f"fit failed: {res.error}"
                        st.status, st.detail = "error", res.error
                        continue
                    ok += 1
                    st.result, st.status, st.detail = res, "ok", ""
                    st.band = self._calibrated(st)
                    st.evaluated_until = max(st.evaluated_until, res.fitted_at)
                if ok:
                    state.last_fit = now
        with self.lock:
            for key, (_, ts, vs) in current.items():
                self._evaluate(state.series[key], ts, vs, cfg)

    def _threshold_values(self, state: ForecastState, now: float
                          ) -> list[tuple[dict[str, str], float]]:
        """Read the threshold query (if any); on failure fall back to the fixed value."""
        thr = state.config.threshold
        if thr is None or not thr.query:
            return []
        try:
            return self.client.query(thr.query, now)
        except (PrometheusUnavailable, PrometheusError) as exc:
            with self.lock:
                state.errors_total += 1
                state.last_error = f"threshold query failed: {exc}"
            return []

    @staticmethod
    def _match_threshold(cfg: ForecastConfig, labels: dict[str, str],
                         limits: list[tuple[dict[str, str], float]]) -> float | None:
        """The threshold for one series: the query result sharing its labels, else `value`."""
        thr = cfg.threshold
        if thr is None:
            return None
        if len(limits) == 1:
            return limits[0][1]
        for limit_labels, value in limits:
            shared = (set(limit_labels) & set(labels)) - {"__name__"}
            if shared and all(limit_labels[k] == labels[k] for k in shared):
                return value
        return thr.value

    @staticmethod
    def _calibrated(st: SeriesState) -> FitResult | None:
        if st.result is None or st.halfwidth is None:
            return st.result
        return calibrate(st.result, st.halfwidth)

    @classmethod
    def _evaluate(cls, st: SeriesState, ts: np.ndarray, vs: np.ndarray,
                  cfg: ForecastConfig) -> None:
        """Judge each new actual point (after the fit) with `judge_points`, in time order.

        The decision itself (band, calibration, persistence) lives in
        `vigil.forecaster.detectors.judge_points`, which `vigil backtest` replays too.
        """
        res = st.result
        if res is None:
            return
        new = ts > st.evaluated_until
        if not new.any():
            return
        t_new, y_new = ts[new], vs[new]
        yhat, lo, hi = band_at(res, t_new)
        judge_points(st, y_new, yhat, lo, hi, widen_at(res, t_new), cfg)
        st.evaluated_until = float(t_new[-1])
        st.band = cls._calibrated(st)

    # --- what gets published ---------------------------------------------------------------
    def snapshot(self, now: float | None = None) -> list[dict[str, Any]]:
        """Every forecast with its series, as plain data (used by /metrics and the JSON API)."""
        now = self.clock() if now is None else now
        out = []
        with self.lock:
            for state in self.forecasts.values():
                cfg = state.config
                series_out = []
                for st in state.series.values():
                    item: dict[str, Any] = {"labels": dict(st.labels), "status": st.status,
                                            "threshold": st.threshold,
                                            "detail": st.detail,
                                            "history_seconds": st.history_seconds,
                                            "last_value": st.last_value,
                                            "last_value_timestamp": st.last_value_ts}
                    res = st.band or st.result
                    if res is not None:
                        yhat, lo, hi = (float(a[0]) for a in band_at(res, now))
                        eta = (threshold_eta(res, now, st.threshold, cfg.threshold.direction)
                               if cfg.threshold is not None and st.threshold is not None
                               else math.inf)
                        item.update({
                            "yhat": yhat, "yhat_lower": lo, "yhat_upper": hi,
                            "threshold_eta_seconds": eta, "anomaly": st.anomaly,
                            "fitted_at": res.fitted_at, "warm_started": res.warm_started,
                            "grid": res.grid, "band": (res.yhat, res.lower, res.upper),
                        })
                    series_out.append(item)
                out.append({
                    "name": cfg.name, "query": cfg.query,
                    "threshold": (cfg.threshold.model_dump() if cfg.threshold else None),
                    "horizon_seconds": cfg.horizon, "step_seconds": cfg.step,
                    "last_fit_timestamp": state.last_fit, "fit_duration_seconds": state.fit_duration,
                    "last_read_timestamp": state.last_read,
                    "age_seconds": (now - state.last_fit) if state.last_fit else None,
                    "errors_total": state.errors_total, "last_error": state.last_error,
                    "series": series_out,
                })
        return out
