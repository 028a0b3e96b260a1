"""Causal anomaly detectors for the backtest: Vigil's, and two Prometheus-rule baselines.

Every detector maps a series (timestamps, values) to an anomaly score in [0, 1] per row,
where row t's score uses rows 0..t only. The committed decision is `score >= threshold`
with the threshold fixed in this module, never fitted to labels.

Vigil's detector (the service's model, replayed):
1. Every `retrain_every` rows, Prophet is refitted on the trailing `train_window` rows
   before the current row (warm-started from the previous fit), and forecasts the next
   `retrain_every` rows. Between refits nothing is fitted.
2. Each row's residual against that forecast is divided by a robust scale (MAD of the
   fit's in-sample residuals) into a z-score. This is the cheap part that runs every row.
3. The mean |z| over the last `short_window` rows is compared with its own distribution
   over the trailing `long_window` rows (mean and standard deviation); the score is the
   normal CDF of that standardised value, so a sustained or unusual departure scores near 1
   and the usual noise of this particular series scores near 0.5.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from vigil.forecaster.model import quiet_prophet

__all__ = [
    "TREND_THRESHOLD",
    "VIGIL_THRESHOLD",
    "ZSCORE_THRESHOLD",
    "VigilDetector",
    "hold_alerts",
    "rolling_zscore",
    "trend_detector",
    "vigil_detector",
]

# Committed thresholds (a 1-in-100,000 tail for Vigil's score, 3 sigma for the baselines,
# the way the bundled Prometheus rules are written). They are constants of the detector and
# never fitted to labels by the backtest.
VIGIL_THRESHOLD = 0.99999
ZSCORE_THRESHOLD = 3.0
TREND_THRESHOLD = 3.0
# An alert keeps firing this many rows after its last trigger (3 h at a 5-minute step), so a
# flickering condition pages once; the same hold is applied to the baselines.
HOLD_ROWS = 36


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


@dataclass
class VigilDetector:
    """Settings of Vigil's detector, in rows (NAB files are regularly spaced)."""

    retrain_every: int = 288
    train_window: int = 2016
    min_train: int = 96
    daily_fourier_order: int = 12
    short_window: int = 10
    long_window: int = 1000
    max_fit_points: int = 800
    z_cap: float = 1e3
    scale_window: int = 576
    threshold: float = VIGIL_THRESHOLD

    def blocks(self, n: int) -> list[tuple[int, int]]:
        """Row ranges [start, end) that share one fit: rows before min_train, then blocks."""
        starts = [0, *range(self.min_train, n, self.retrain_every)] if n > self.min_train else [0]
        ends = [*starts[1:], n]
        return [(a, b) for a, b in zip(starts, ends, strict=True) if b > a]

    def _model(self, prophet: type, span_days: float) -> Any:
        # 5-minute data supports a detailed daily shape; Prophet's default order 4 smooths
        # sharp daily steps into large periodic residuals
        model = prophet(daily_seasonality=False, weekly_seasonality=span_days >= 14,
                        yearly_seasonality=False, uncertainty_samples=0)
        if span_days >= 2:
            model.add_seasonality("daily", period=1, fourier_order=self.daily_fourier_order)
        return model

    def forecast(self, ts: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """Causal one-fit-per-block forecasts and residual scales; returns (f, scale, fits)."""
        from vigil.forecaster.model import _bucket

        quiet_prophet()
        from prophet import Prophet

        n = len(y)
        f = np.full(n, np.nan)
        scale = np.full(n, np.nan)
        init: dict[str, Any] | None = None
        fits = 0
        for k, hi in self.blocks(n):
            if k < self.min_train:
                continue
            lo = max(0, k - self.train_window)
            tr_t, tr_y = ts[lo:k], y[lo:k]
            span_days = (tr_t[-1] - tr_t[0]) / 86400.0
            bt, by = _bucket(tr_t, tr_y, self.max_fit_points)
            df = pd.DataFrame({"ds": pd.to_datetime(bt, unit="s"), "y": by})
            model = self._model(Prophet, span_days)
            try:
                model.fit(df, init=init) if init is not None else model.fit(df)
            except Exception:  # noqa: BLE001 - parameter shapes changed: cold start
                model = self._model(Prophet, span_days)
                model.fit(df)
            fits += 1
            params: dict[str, Any] = {name: float(model.params[name][0][0])
                                      for name in ("k", "m", "sigma_obs")}
            params.update({name: np.asarray(model.params[name][0]) for name in ("delta", "beta")})
            init = params
            pred_t = np.concatenate([tr_t, ts[k:hi]])
            pred = model.predict(pd.DataFrame({"ds": pd.to_datetime(pred_t, unit="s")}))
            yhat = pred["yhat"].to_numpy()
            resid = tr_y - yhat[: len(tr_y)]
            mad = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
            spread = float(np.std(tr_y))
            floor = max(1e-6 * max(1.0, float(np.mean(np.abs(tr_y)))), 0.01 * spread)
            f[k:hi] = yhat[len(tr_y):]
            scale[k:hi] = max(mad, floor)
        return f, scale, fits

    def score_from_forecast(self, ts: np.ndarray, y: np.ndarray, f: np.ndarray,
                            scale: np.ndarray) -> np.ndarray:
        """Turn forecast residuals into the [0, 1] anomaly score (causal rolling windows)."""
        z = self.residual_z(ts, y, f, scale)
        z = np.where(np.isfinite(z), np.minimum(z, self.z_cap), np.nan)
        short = pd.Series(z).rolling(self.short_window, min_periods=1).mean()
        hist = short.shift(self.short_window)
        mu = hist.rolling(self.long_window, min_periods=50).mean()
        sd = hist.rolling(self.long_window, min_periods=50).std()
        sd = np.maximum(sd.to_numpy(), 0.05 * np.maximum(mu.to_numpy(), 1e-3))
        standard = (short.to_numpy() - mu.to_numpy()) / sd
        score = _norm_cdf(np.nan_to_num(standard, nan=-10.0))
        return np.clip(score, 0.0, 1.0)

    def residual_z(self, ts: np.ndarray, y: np.ndarray, f: np.ndarray,
                   scale: np.ndarray) -> np.ndarray:
        """|residual| / robust scale, with a seasonal correction where it helps.

        The correction subtracts the median residual at the same time of day over the last
        three days, which removes a periodic misfit (sharp daily steps that a Fourier series
        rounds off). At each block start it is used only if it shrank the spread of the
        out-of-sample residuals of the last `scale_window` rows; the scale is re-estimated from
        those residuals (recent ones only, so the poor forecasts of a young model age out).
        """
        n = len(y)
        r = y - f
        rc = np.full(n, np.nan)
        for k, hi in self.blocks(n):
            past_ts = ts[max(0, k - self.train_window):k]
            if len(past_ts) < 2:
                continue
            step = float(np.median(np.diff(past_ts)))
            period = round(86400.0 / step) if step > 0 else 0
            if period < 2 or k < 3 * period:
                continue
            rows = np.arange(k, hi)
            lagged = np.vstack([r[rows - j * period] for j in (1, 2, 3)])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
                rc[k:hi] = r[k:hi] - np.nanmedian(lagged, axis=0)
        out = np.full(n, np.nan)
        for k, hi in self.blocks(n):
            lo = max(0, k - self.scale_window)
            past, past_c = r[lo:k], rc[lo:k]
            past = past[np.isfinite(past)]
            past_c = past_c[np.isfinite(past_c)]
            use, sc = r[k:hi], scale[k:hi]
            if len(past) >= 50:
                mad = _mad(past)
                sc = np.full(hi - k, max(mad, float(np.nanmin(scale[k:hi])) * 0.1
                                         if np.isfinite(scale[k:hi]).any() else mad))
                if len(past_c) >= 50:
                    mad_c = _mad(past_c)
                    if mad_c < 0.8 * mad:
                        use = rc[k:hi]
                        sc = np.full(hi - k, max(mad_c, float(sc[0]) * 0.1))
            out[k:hi] = np.abs(use) / sc
        return out

    def scores(self, ts: np.ndarray, y: np.ndarray) -> np.ndarray:
        f, scale, _ = self.forecast(ts, y)
        return self.score_from_forecast(ts, y, f, scale)


def hold_alerts(alerts: np.ndarray, rows: int = HOLD_ROWS) -> np.ndarray:
    """Keep an alert firing for `rows` rows after its last trigger, like `keep_firing_for`.

    Causal: row t's output depends only on triggers at rows <= t.
    """
    trig = np.asarray(alerts).astype(bool)
    idx = np.where(trig, np.arange(len(trig)), -(10**12))
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return ((np.arange(len(trig)) - last) < rows).astype(int)


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def vigil_detector(ts: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vigil's score and committed alert per row."""
    det = VigilDetector()
    score = det.scores(ts, y)
    return score, hold_alerts(score >= det.threshold)


def rolling_zscore(y: np.ndarray, window: int = 288,
                   threshold: float = ZSCORE_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """`abs(x - avg_over_time(x[w])) / stddev_over_time(x[w]) > 3`, as a Prometheus rule."""
    s = pd.Series(y)
    mean = s.rolling(window, min_periods=window // 4).mean()
    std = s.rolling(window, min_periods=window // 4).std(ddof=0)
    z = ((s - mean).abs() / std.replace(0.0, np.nan)).to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=1e3)
    score = _norm_cdf(z) * 2.0 - 1.0
    return np.clip(score, 0, 1), hold_alerts(z > threshold)


def trend_detector(y: np.ndarray, fit_window: int = 12, ahead: int = 12, window: int = 288,
                   threshold: float = TREND_THRESHOLD) -> tuple[np.ndarray, np.ndarray]:
    """`predict_linear(x[1h], 1h)` leaving avg ± 3 stddev over the last day, as a rule would."""
    s = pd.Series(y)
    idx = pd.Series(np.arange(len(y), dtype=float))
    # least-squares line over the trailing fit_window rows, extrapolated `ahead` rows
    mx = idx.rolling(fit_window).mean()
    my = s.rolling(fit_window).mean()
    cov = (idx * s).rolling(fit_window).mean() - mx * my
    var = (idx * idx).rolling(fit_window).mean() - mx * mx
    slope = cov / var
    pred = my + slope * (idx - mx + ahead)
    mean = s.rolling(window, min_periods=window // 4).mean()
    std = s.rolling(window, min_periods=window // 4).std(ddof=0)
    z = ((pred - mean).abs() / std.replace(0.0, np.nan)).to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=1e3)
    score = _norm_cdf(z) * 2.0 - 1.0
    return np.clip(score, 0, 1), hold_alerts(z > threshold)
