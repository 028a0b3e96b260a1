"""Fit Prophet to one series and turn the fit into a band, a threshold ETA and anomaly flags.

Functions here are pure and picklable so the service can run them in a process pool.

Speed tuning (see docs/forecaster.md for the measured cost):
- `uncertainty_samples=0`: Prophet skips its Monte-Carlo simulation of future trend
  changes (1000 trend paths by default, most of `predict`'s time). The band is built instead
  from the empirical quantiles of the in-sample residuals, widened with the horizon by
  sqrt(1 + h/span). The cost: the band does not reflect the possibility of future trend
  changepoints the way Prophet's sampled band does, so far-horizon bands are narrower for
  series whose trend changes often.
- History is averaged into at most `max_fit_points` buckets before fitting.

In-sample residuals understate the real error of a model that overfits (25 changepoints on a
short history), so the engine also calibrates the band on out-of-sample residuals:
`conformal_halfwidth` and `calibrate` below (split-conformal, see docs/forecaster.md).
- A retrain starts L-BFGS from the previous fit's parameters (`Prophet.fit(df, init=...)`,
  Prophet's documented warm start), which cuts optimiser iterations.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = [
    "FitRequest",
    "FitResult",
    "anomaly_flag",
    "band_at",
    "calibrate",
    "conformal_halfwidth",
    "fit_series",
    "is_outside",
    "quiet_prophet",
    "shard_of",
    "threshold_eta",
    "widen_at",
    "widen_band",
]

Params = dict[str, Any]
Seasonality = Literal["auto"] | bool


def quiet_prophet() -> None:
    """Silence cmdstanpy's and Prophet's INFO chatter (one line per fit otherwise)."""
    names = {"cmdstanpy", "prophet", "prophet.plot", "prophet.forecaster", "prophet.models",
             "prophet.utilities"}
    names |= {n for n in logging.root.manager.loggerDict
              if n.startswith(("prophet", "cmdstanpy"))}
    for name in sorted(names):
        logger = logging.getLogger(name)
        logger.setLevel(logging.ERROR)
        logger.propagate = False
        logger.disabled = True


def shard_of(forecast: str, labels: dict[str, str], shards: int) -> int:
    """Stable shard of a series: crc32 of its forecast name and sorted labels, mod shards."""
    text = forecast + "\x00" + "\x00".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return zlib.crc32(text.encode()) % shards


@dataclass
class FitRequest:
    """Everything a worker process needs to fit one series."""

    forecast: str
    labels: dict[str, str]
    timestamps: np.ndarray
    values: np.ndarray
    step: float
    horizon: float
    interval_width: float = 0.95
    daily: Seasonality = True
    weekly: Seasonality = "auto"
    yearly: Seasonality = False
    max_fit_points: int = 1500
    init: Params | None = None
    uncertainty_samples: int = 0


@dataclass
class FitResult:
    """A fitted forecast on a regular grid from the end of history to end + horizon."""

    forecast: str
    labels: dict[str, str]
    fitted_at: float  # last history timestamp
    grid: np.ndarray = field(repr=False)
    yhat: np.ndarray = field(repr=False)
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    params: Params | None = None
    duration_seconds: float = 0.0
    residual_scale: float = 0.0
    warm_started: bool = False
    error: str = ""
    # history span the band widens against: the half-width at horizon h is the in-sample
    # residual quantile times sqrt(1 + h / span); 0 means no widening (bands built elsewhere)
    span: float = 0.0


def _bucket(ts: np.ndarray, vs: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Average consecutive samples into at most max_points buckets (keeps gaps as gaps)."""
    n = len(ts)
    if n <= max_points:
        return ts, vs
    size = math.ceil(n / max_points)
    groups = np.arange(n) // size
    counts = np.bincount(groups)
    return (np.bincount(groups, ts) / counts, np.bincount(groups, vs) / counts)


def _warm_params(model: Any) -> Params:
    """Prophet's documented warm-start parameters (see 'Updating fitted models')."""
    out: Params = {}
    for name in ("k", "m", "sigma_obs"):
        out[name] = float(model.params[name][0][0])
    for name in ("delta", "beta"):
        out[name] = np.asarray(model.params[name][0], dtype=float)
    return out


def _usable_init(init: Params | None) -> Params | None:
    """The previous fit's parameters, unless they cannot start an optimiser.

    A history that the trend fits exactly (a constant, or a few points) leaves sigma_obs near
    0 (1e-16 seen); L-BFGS started there diverges (yhat of 1e21 bytes for a flat memory
    series), so such a fit is refitted cold instead.
    """
    if init is None:
        return None
    values = [np.asarray(v, dtype=float) for v in init.values()]
    if not all(np.all(np.isfinite(v)) for v in values) or float(init["sigma_obs"]) < 1e-6:
        return None
    return init


def _sane(resid: np.ndarray, values: np.ndarray) -> bool:
    """A fit is usable when its in-sample errors are finite and not far beyond the data's range."""
    if not np.all(np.isfinite(resid)):
        return False
    spread = float(np.ptp(values)) if len(values) else 0.0
    scale = float(np.max(np.abs(values))) if len(values) else 0.0
    return float(np.max(np.abs(resid), initial=0.0)) <= 10.0 * spread + 1e-6 * scale


def _to_ds(ts: np.ndarray) -> Any:
    import pandas as pd

    return pd.to_datetime(ts, unit="s")


def fit_series(req: FitRequest) -> FitResult:
    """Fit Prophet to one series and forecast over the horizon; errors come back as text."""
    quiet_prophet()
    started = time.perf_counter()
    try:
        import pandas as pd
        from prophet import Prophet

        ts, vs = _bucket(req.timestamps, req.values, req.max_fit_points)
        df = pd.DataFrame({"ds": _to_ds(ts), "y": vs})

        def new_model() -> Any:
            return Prophet(daily_seasonality=req.daily, weekly_seasonality=req.weekly,
                           yearly_seasonality=req.yearly, interval_width=req.interval_width,
                           uncertainty_samples=req.uncertainty_samples)

        def residuals(fitted: Any) -> np.ndarray:
            # in-sample prediction on the raw points: residuals at the native resolution
            raw = fitted.predict(pd.DataFrame({"ds": _to_ds(req.timestamps)}))
            return np.asarray(req.values - raw["yhat"].to_numpy(), dtype=float)

        init = _usable_init(req.init)
        model, resid, warm = None, np.array([]), False
        if init is not None:
            try:
                model = new_model()
                model.fit(df, init=init)
                resid, warm = residuals(model), True
            except Exception:  # noqa: BLE001 - shapes changed (new seasonality, fewer points)
                model = None
            if warm and not _sane(resid, req.values):  # L-BFGS diverged from the old optimum
                model, warm = None, False
        if model is None:
            model = new_model()
            model.fit(df)
            resid = residuals(model)
        end = float(req.timestamps[-1])
        grid = end + req.step * np.arange(0, int(req.horizon // req.step) + 1)
        future = model.predict(pd.DataFrame({"ds": _to_ds(grid)}))
        yhat = future["yhat"].to_numpy()
        span = max(float(req.timestamps[-1] - req.timestamps[0]), req.step)
        if req.uncertainty_samples > 0:
            lower = future["yhat_lower"].to_numpy()
            upper = future["yhat_upper"].to_numpy()
        else:
            alpha = (1.0 - req.interval_width) / 2.0
            q_lo, q_hi = np.quantile(resid, [alpha, 1.0 - alpha])
            widen = np.sqrt(1.0 + (grid - end) / span)
            lower = yhat + q_lo * widen
            upper = yhat + q_hi * widen
        scale = float(1.4826 * np.median(np.abs(resid - np.median(resid)))) if len(resid) else 0.0
        return FitResult(req.forecast, req.labels, end, grid, yhat, lower, upper,
                         params=_warm_params(model), residual_scale=scale, warm_started=warm,
                         duration_seconds=time.perf_counter() - started, span=span)
    except Exception as exc:  # noqa: BLE001 - a bad series must not kill the pool
        empty = np.array([])
        return FitResult(req.forecast, req.labels, 0.0, empty, empty, empty, empty,
                         duration_seconds=time.perf_counter() - started,
                         error=f"{exc.__class__.__name__}: {str(exc)[:200]}")


def band_at(result: FitResult, at: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolate (yhat, lower, upper) at times inside the forecast grid (NaN outside)."""
    at_arr = np.atleast_1d(np.asarray(at, dtype=float))
    out = []
    for arr in (result.yhat, result.lower, result.upper):
        if len(result.grid) == 0:
            out.append(np.full(at_arr.shape, np.nan))
            continue
        vals = np.interp(at_arr, result.grid, arr)
        vals[(at_arr < result.grid[0] - 1e-9) | (at_arr > result.grid[-1] + 1e-9)] = np.nan
        out.append(vals)
    return out[0], out[1], out[2]


def widen_at(result: FitResult, at: np.ndarray | float) -> np.ndarray:
    """The band's horizon factor sqrt(1 + h / span) at times `at` (h = time since the fit)."""
    at_arr = np.atleast_1d(np.asarray(at, dtype=float))
    if result.span <= 0:
        return np.ones(at_arr.shape)
    return np.sqrt(1.0 + np.maximum(at_arr - result.fitted_at, 0.0) / result.span)


def conformal_halfwidth(residuals: np.ndarray, interval_width: float) -> float | None:
    """Split-conformal half-width of a band of coverage `interval_width` from residuals.

    The score is |residual| (the standard symmetric split-conformal band, which needs far
    fewer residuals than one quantile per side). With n residuals the half-width is the
    ceil((n + 1) * interval_width)-th smallest score, the finite-sample rank that makes the
    coverage hold for exchangeable errors; when n is too small for that rank the largest
    score is used. None for no residuals.
    """
    scores = np.abs(np.asarray(residuals, dtype=float))
    n = len(scores)
    if n == 0:
        return None
    k = min(n, math.ceil((n + 1) * interval_width))
    return float(np.partition(scores, k - 1)[k - 1])


def calibrate(result: FitResult, halfwidth: float) -> FitResult:
    """The fit with its band widened to at least yhat +- halfwidth * widen (never narrowed).

    `halfwidth` is a horizon-normalised out-of-sample error (`conformal_halfwidth`); each
    side of the band becomes the wider of the in-sample band and the out-of-sample one.
    """
    if len(result.grid) == 0:
        return result
    lower, upper = widen_band(result.yhat, result.lower, result.upper,
                              widen_at(result, result.grid), halfwidth)
    return dataclasses.replace(result, lower=lower, upper=upper)


def widen_band(yhat: np.ndarray, lower: np.ndarray, upper: np.ndarray, widen: np.ndarray,
               halfwidth: float) -> tuple[np.ndarray, np.ndarray]:
    """Each side of the band widened to yhat -+ halfwidth * widen where that is wider."""
    return (np.minimum(lower, yhat - halfwidth * widen),
            np.maximum(upper, yhat + halfwidth * widen))


def is_outside(value: float, low: float, high: float, direction: str = "both") -> bool:
    """Whether an actual value counts against the band: `above` and `below` look at one side."""
    if direction == "above":
        return value > high
    if direction == "below":
        return value < low
    return value < low or value > high


def threshold_eta(result: FitResult, now: float, threshold: float, direction: str) -> float:
    """Seconds from now until the band first crosses the threshold within the horizon, or +Inf.

    `above`: the upper bound reaching the threshold; `below`: the lower bound reaching it.
    Returns 0 when the band is already across at `now`; the crossing time is interpolated
    between grid points.
    """
    if len(result.grid) == 0:
        return math.inf
    grid = result.grid
    bound = result.upper if direction == "above" else result.lower
    sign = 1.0 if direction == "above" else -1.0
    over = sign * (bound - threshold)  # >= 0 means crossed
    mask = grid >= now
    if not mask.any():
        return math.inf
    idx = np.nonzero(mask)[0]
    # value at `now` itself (interpolated), then the grid points after it
    cur = float(np.interp(now, grid, over)) if now >= grid[0] else float(over[idx[0]])
    if cur >= 0:
        return 0.0
    prev_t, prev_v = now, cur
    for i in idx:
        t, v = float(grid[i]), float(over[i])
        if v >= 0:
            frac = 0.0 if v == prev_v else (0.0 - prev_v) / (v - prev_v)
            return max(0.0, prev_t + frac * (t - prev_t) - now)
        prev_t, prev_v = t, v
    return math.inf


def anomaly_flag(outside: np.ndarray, points: int, window: int) -> bool:
    """Persistence rule: anomalous when at least `points` of the last `window` checks are out."""
    recent = np.asarray(outside[-window:], dtype=bool)
    return int(recent.sum()) >= points
