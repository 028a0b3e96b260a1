"""The anomaly decision of `vigil_forecast_anomaly`, and two Prometheus-rule baselines.

`judge_points` is the one anomaly decision Vigil has. The service's engine calls it on the
points each cycle reads, and `vigil backtest` reaches it through the same engine replayed on
CSV rows, so a backtest score describes the flag users get. It is deterministic and does no
I/O: the flags depend only on the series' detector state, the points and the fit's band.

What it does per new point, in time order (docs/forecaster.md has the reasoning):
1. The point's residual against the last fit, divided by the horizon factor
   sqrt(1 + h / span), is an out-of-sample error of the model (the fit never saw the point).
2. The band the point is judged against is the fit's band widened to
   yhat +- q * sqrt(1 + h / span), where q is the larger of the split-conformal half-width
   of the series' latest out-of-sample residuals at coverage `anomaly_coverage` (never less
   than the published one at `interval_width`) and `anomaly_floor` robust standard
   deviations (1.4826 * the median absolute deviation) of the residuals judged while the
   flag was down. A conformal rank alone follows the residuals down to nothing on a series
   the model fits almost exactly, and a high rank of a short window is its largest residual;
   the floor keeps a refit's wobble on the first, and ordinary noise on any, from paging.
3. The flag is the persistence rule: at least `anomaly_points` of the last `anomaly_window`
   judged points outside that band (`anomaly_direction` picks the sides that count). Once
   raised it stays up for `anomaly_hold` further points after the rule last held, like
   Prometheus' `keep_firing_for`, so a departure that dips back inside for a point or two is
   one anomaly, not many. After the flag rises, it cannot rise anew for `anomaly_refractory`
   points (it still stays up, or falls, as the rule says): a departure that comes back
   within that time is the same incident, so it neither pages again nor keeps the flag up
   longer. Its outside points still join the calibration clipped, as in step 4.
4. The residual joins the calibration window `anomaly_window` points later. If it was
   outside and the flag rose (or the rule held) meanwhile, it joins clipped to the published
   half-width, so an anomaly widens neither band, the published one nor the one catching it;
   and only residuals judged while the flag was down feed the floor's scale, since a long
   anomaly's points would otherwise move the median and raise the floor under it. Nothing
   is judged before the window holds `calibration_min_points` residuals.

The baselines map a series to a per-row score in [0, 1] and a 0/1 alert, causally (row t
uses rows 0..t only), the way the corresponding Prometheus alerting rules would fire.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol

import numpy as np
import pandas as pd
from vigil.forecaster.config import ForecastConfig
from vigil.forecaster.model import anomaly_flag, conformal_halfwidth, is_outside, widen_band

__all__ = [
    "BASELINE_HOLD_ROWS",
    "TREND_THRESHOLD",
    "ZSCORE_THRESHOLD",
    "DetectorState",
    "Ring",
    "hold_alerts",
    "judge_points",
    "robust_sd",
    "rolling_zscore",
    "trend_detector",
]


class Ring:
    """The latest `size` floats in a fixed numpy buffer (8 bytes a value), in no order."""

    def __init__(self, size: int) -> None:
        self.buffer = np.empty(size)
        self.count = 0
        self.next = 0

    def append(self, value: float) -> None:
        self.buffer[self.next] = value
        self.next = (self.next + 1) % len(self.buffer)
        self.count = min(self.count + 1, len(self.buffer))

    def __len__(self) -> int:
        return self.count

    def values(self) -> np.ndarray:
        return self.buffer[: self.count]


class DetectorState(Protocol):
    """What the decision keeps per series between calls (the engine's SeriesState has it)."""

    outside: deque[bool]
    residuals: Ring
    pending: deque[list[Any]]
    halfwidth: float | None
    anomaly_halfwidth: float | None
    typical: Ring  # the residuals of `residuals` judged while the flag was down
    robust_sd: float | None  # 1.4826 * MAD of `typical`
    anomaly: bool
    held: int  # points the flag stays up without the rule holding
    rearm: int  # points left before the flag may rise anew (anomaly_refractory)


def robust_sd(residuals: np.ndarray) -> float | None:
    """1.4826 times the median absolute deviation: the standard deviation of normal errors,
    unmoved by the few large ones a heavy-tailed series has. None for no residuals."""
    if len(residuals) == 0:
        return None
    return 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))


def _judged_halfwidth(st: DetectorState, cfg: ForecastConfig) -> float:
    """The half-width a point is judged against: conformal at both coverages, and the floor."""
    return max(st.halfwidth or 0.0, st.anomaly_halfwidth or 0.0,
               cfg.anomaly_floor * (st.robust_sd or 0.0))


def judge_points(st: DetectorState, values: np.ndarray, yhat: np.ndarray, lower: np.ndarray,
                 upper: np.ndarray, widen: np.ndarray, cfg: ForecastConfig) -> np.ndarray:
    """Judge new points against a fit's band in time order; return the flag after each.

    `yhat`, `lower`, `upper` are the fit's own band at the points' times (NaN beyond the
    fit's horizon: such points are skipped and keep the flag as it was) and `widen` its
    horizon factor there. `st` is updated in place.
    """
    flags = np.zeros(len(values), dtype=bool)
    for i, (value, y0, w) in enumerate(zip(values, yhat, widen, strict=True)):
        if math.isnan(y0):
            flags[i] = st.anomaly
            continue  # beyond the horizon: the next retrain takes over
        resid = float((value - y0) / w)
        blocked, st.rearm = st.rearm > 0, max(st.rearm - 1, 0)
        rule = False
        if len(st.residuals) < cfg.calibration_min_points:
            st.outside.clear()  # judged only once the band is calibrated
            st.anomaly, st.held, out, keep = False, 0, False, 0
        else:
            low, high = float(lower[i]), float(upper[i])
            low, high = widen_band(y0, low, high, w, _judged_halfwidth(st, cfg))
            out = is_outside(value, low, high, cfg.anomaly_direction)
            st.outside.append(out)
            rule = anomaly_flag(np.array(st.outside, dtype=bool), cfg.anomaly_points,
                                cfg.anomaly_window)
            if rule and (st.anomaly or not blocked):
                if not st.anomaly:
                    st.rearm = cfg.anomaly_refractory  # a new raise: no other one for a while
                st.anomaly, st.held = True, cfg.anomaly_hold
            elif st.held > 0:
                st.held -= 1  # the hold keeps the flag up
            else:
                st.anomaly = False
            keep = cfg.anomaly_window
        st.pending.append([resid, out, False, True])  # residual, outside, flagged, calm
        if st.anomaly or (keep and rule):  # a blocked rise is an anomaly for calibration too
            for entry in st.pending:
                entry[2] = entry[2] or entry[1]  # outside points of a flagged stretch
                entry[3] = False  # and none of that stretch is typical
        if len(st.pending) > keep:
            typical_changed = False
            while len(st.pending) > keep:
                r, _, flagged, calm = st.pending.popleft()
                if flagged and st.halfwidth:
                    r = math.copysign(min(abs(r), st.halfwidth), r)
                if calm:
                    st.typical.append(r)
                    typical_changed = True
                st.residuals.append(r)
            known = st.residuals.values()
            st.halfwidth = conformal_halfwidth(known, cfg.interval_width)
            st.anomaly_halfwidth = conformal_halfwidth(known, cfg.anomaly_coverage)
            if typical_changed:  # two medians a point: only when the floor's sample moved
                st.robust_sd = robust_sd(st.typical.values())
        flags[i] = st.anomaly
    return flags


# Committed settings of the baselines, chosen by the same protocol as Vigil's detector
# (bench/tune_nab.py --tune all: the best on every development file; docs/backtest.md).
# An alert keeps firing this many rows after its last trigger, like `keep_firing_for`.
ZSCORE_THRESHOLD = 5.0
TREND_THRESHOLD = 6.0
BASELINE_HOLD_ROWS = 36


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    from math import erf

    return 0.5 * (1.0 + np.vectorize(erf)(x / math.sqrt(2.0)))


def hold_alerts(alerts: np.ndarray, rows: int = BASELINE_HOLD_ROWS) -> np.ndarray:
    """Keep an alert firing for `rows` rows after its last trigger, like `keep_firing_for`.

    Causal: row t's output depends only on triggers at rows <= t.
    """
    trig = np.asarray(alerts).astype(bool)
    idx = np.where(trig, np.arange(len(trig)), -(10**12))
    last = np.maximum.accumulate(idx) if len(idx) else idx
    return ((np.arange(len(trig)) - last) < max(rows, 1)).astype(int)


def rolling_zscore(y: np.ndarray, window: int = 288, threshold: float = ZSCORE_THRESHOLD,
                   hold: int = BASELINE_HOLD_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """`abs(x - avg_over_time(x[w])) / stddev_over_time(x[w]) > threshold`, as a Prometheus rule."""
    s = pd.Series(y)
    mean = s.rolling(window, min_periods=window // 4).mean()
    std = s.rolling(window, min_periods=window // 4).std(ddof=0)
    z = ((s - mean).abs() / std.replace(0.0, np.nan)).to_numpy()
    z = np.nan_to_num(z, nan=0.0, posinf=1e3)
    score = _norm_cdf(z) * 2.0 - 1.0
    return np.clip(score, 0, 1), hold_alerts(z > threshold, hold)


def trend_detector(y: np.ndarray, fit_window: int = 12, ahead: int = 12, window: int = 288,
                   threshold: float = TREND_THRESHOLD, hold: int = BASELINE_HOLD_ROWS
                   ) -> tuple[np.ndarray, np.ndarray]:
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
    return np.clip(score, 0, 1), hold_alerts(z > threshold, hold)
