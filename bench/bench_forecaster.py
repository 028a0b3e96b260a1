"""Benchmark: Vigil's fitting against two Prophet baselines, on the same synthetic series.

200 series of two weeks at a 5-minute step (4032 points), each with a held-back day.
- default Prophet: `Prophet()` with nothing changed (seasonalities on Prophet's own `auto`
  rules, so yearly is off on two weeks of history; uncertainty_samples=1000), a fresh fit
  every time, then predict the held-back day (with its sampled band).
- Prometheus-Anomaly-Detector style: the configuration the Prometheus Anomaly Detector
  project uses, daily, weekly and yearly seasonality forced on, 1000 uncertainty samples,
  a fresh fit every time.
- vigil: vigil.forecaster.model.fit_series as the service runs it on a retrain: history
  averaged into at most 1500 points, yearly off, uncertainty_samples=0 with the residual
  band, warm-started from the previous fit's parameters. The previous fit (on the history
  up to one retrain interval, 1 hour, earlier) is made in an untimed warm-up pass, because in
  the service it is the fit of the previous cycle.
All three run in the same 2-process pool, in the same run. Prints series/s, the throughput
ratio of Vigil against each baseline, and the MAE on the held-back day of each.

    .venv/bin/python bench/bench_forecaster.py             # 200 series (about 5 minutes on 2 cores)
    .venv/bin/python bench/bench_forecaster.py --series 20  # a quick run
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from vigil.forecaster.model import FitRequest, fit_series, quiet_prophet

STEP = 300.0
DAY = 86400.0
HISTORY_POINTS = int(14 * DAY / STEP)  # 4032
HELD_BACK = int(DAY / STEP)  # 288
RETRAIN_POINTS = 12  # one hour at 5 minutes


def make_series(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two weeks plus a day of a plausible service metric: trend, daily/weekly cycles, noise."""
    rng = np.random.default_rng(seed)
    n = HISTORY_POINTS + HELD_BACK
    t = 1_700_000_000.0 + STEP * np.arange(n)
    level = rng.uniform(10, 1000)
    daily = level * rng.uniform(0.05, 0.4) * np.sin(2 * np.pi * t / DAY + rng.uniform(0, 6.3))
    daily += level * rng.uniform(0, 0.1) * np.sin(4 * np.pi * t / DAY + rng.uniform(0, 6.3))
    weekly = level * rng.uniform(0, 0.2) * np.sin(2 * np.pi * t / (7 * DAY) + rng.uniform(0, 6.3))
    trend = level * rng.uniform(-0.1, 0.1) * (t - t[0]) / (14 * DAY)
    noise = level * rng.uniform(0.01, 0.08) * rng.standard_normal(n)
    return t, level + daily + weekly + trend + noise


def _warm() -> bool:
    quiet_prophet()
    import prophet  # noqa: F401 - import once per worker, outside the timed passes

    return True


def _prophet_fit(seed: int, forced: bool) -> tuple[float, float]:
    """Fresh fit + predict with 1000 uncertainty samples; returns (MAE, seconds)."""
    import pandas as pd
    from prophet import Prophet

    quiet_prophet()
    t, y = make_series(seed)
    started = time.perf_counter()
    model = (Prophet(daily_seasonality=True, weekly_seasonality=True, yearly_seasonality=True,
                     uncertainty_samples=1000) if forced else Prophet())
    model.fit(pd.DataFrame({"ds": pd.to_datetime(t[:HISTORY_POINTS], unit="s"),
                            "y": y[:HISTORY_POINTS]}))
    future = model.predict(pd.DataFrame({"ds": pd.to_datetime(t[HISTORY_POINTS:], unit="s")}))
    seconds = time.perf_counter() - started
    return float(np.mean(np.abs(future["yhat"].to_numpy() - y[HISTORY_POINTS:]))), seconds


def default_prophet(seed: int) -> tuple[float, float]:
    """`Prophet()` exactly as shipped."""
    return _prophet_fit(seed, forced=False)


def pad_style(seed: int) -> tuple[float, float]:
    """Daily, weekly and yearly forced on, as the Prometheus Anomaly Detector configures it."""
    return _prophet_fit(seed, forced=True)


def _request(seed: int, end: int, init: dict[str, Any] | None) -> FitRequest:
    t, y = make_series(seed)
    return FitRequest("bench", {"seed": str(seed)}, t[:end], y[:end], STEP, DAY,
                      daily=True, weekly=True, yearly=False, max_fit_points=1500, init=init)


def vigil_previous(seed: int) -> dict[str, Any] | None:
    """The previous cycle's fit (untimed): its parameters seed the warm start."""
    return fit_series(_request(seed, HISTORY_POINTS - RETRAIN_POINTS, None)).params


def vigil_fit(args: tuple[int, dict[str, Any] | None]) -> tuple[float, float, bool]:
    """Vigil's retrain: returns (MAE, seconds, warm_started)."""
    seed, init = args
    t, y = make_series(seed)
    started = time.perf_counter()
    res = fit_series(_request(seed, HISTORY_POINTS, init))
    seconds = time.perf_counter() - started
    if res.error:
        raise RuntimeError(res.error)
    # grid[0] is the last history point; grid[1:] are the held-back timestamps
    yhat = np.interp(t[HISTORY_POINTS:], res.grid, res.yhat)
    return float(np.mean(np.abs(yhat - y[HISTORY_POINTS:]))), seconds, res.warm_started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=200, help="number of series (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    seeds = list(range(args.series))
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=quiet_prophet) as pool:
        assert all(pool.map(_warm_any, range(args.workers * 2)))
        print(f"{args.series} series x {HISTORY_POINTS} points (two weeks at 5 min), "
              f"held-back day of {HELD_BACK} points, {args.workers} workers", flush=True)

        baselines: dict[str, tuple[list[tuple[float, float]], float]] = {}
        for name, func in (("default Prophet", default_prophet),
                           ("Prometheus-Anomaly-Detector style", pad_style)):
            started = time.perf_counter()
            runs = list(pool.map(func, seeds))
            baselines[name] = (runs, time.perf_counter() - started)
            print(f"{name} done in {baselines[name][1]:.1f}s", flush=True)

        previous = list(pool.map(vigil_previous, seeds))  # untimed: the previous cycle
        started = time.perf_counter()
        vigil = list(pool.map(vigil_fit, zip(seeds, previous, strict=True)))
        vigil_wall = time.perf_counter() - started
    v_rate = args.series / vigil_wall
    v_mae = float(np.mean([m for m, _, _ in vigil]))
    v_each = np.array([m for m, _, _ in vigil])
    warm = sum(1 for *_, w in vigil if w)
    labels = {"default Prophet": "default Prophet (Prophet(), 1000 samples)",
              "Prometheus-Anomaly-Detector style": "PAD style (d+w+y forced, 1000 samples)"}
    print()
    print(f"{'method':<44} {'series/s':>9} {'s/series':>9} {'MAE (held-back day)':>20}")
    for name, (runs, wall) in baselines.items():
        print(f"{labels[name]:<44} {args.series / wall:>9.2f} "
              f"{np.mean([s for _, s in runs]):>9.3f} {np.mean([m for m, _ in runs]):>20.3f}")
    print(f"{'vigil (warm start, residual band)':<44} {v_rate:>9.2f} "
          f"{np.mean([s for _, s, _ in vigil]):>9.3f} {v_mae:>20.3f}")
    print()
    for name, (runs, wall) in baselines.items():
        b_mae = float(np.mean([m for m, _ in runs]))
        b_each = np.array([m for m, _ in runs])
        print(f"vigil / {name}: throughput {v_rate / (args.series / wall):.2f}x, MAE ratio "
              f"{v_mae / b_mae:.3f} ({100 * (v_mae / b_mae - 1):+.1f}%); per-series median "
              f"MAE ratio {np.median(v_each / b_each):.3f}")
    print(f"warm-started fits: {warm}/{args.series}")
    return 0


def _warm_any(_: int) -> bool:
    return _warm()


if __name__ == "__main__":
    sys.exit(main())
