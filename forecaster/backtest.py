"""`vigil backtest`: replay CSVs through the forecaster's own engine, causally, and score.

Each input CSV (`timestamp,value`) is replayed through `vigil.forecaster.engine.Engine`, the
code that produces `vigil_forecast_anomaly`: one engine cycle per row, reading the rows up to
that row's time from the CSV the way a cycle reads Prometheus. Fits, bands, calibration and
the persistence rule are the service's (`fit_series`, `judge_points`), with the forecast's
configured settings (defaults, or one forecast of a forecaster config) mapped to the file's
row spacing. With `--labels` (NAB's labels.json format) it prints the NAB standard-profile
score of that flag and of two Prometheus-rule baselines, all from the same run.

Exit codes: 0 every file replayed cleanly; 3 every file replayed but some rows were skipped
(each counted and named on stderr); 1 at least one file could not be read (the others are
still replayed and scored); 2 usage error (no input, bad flags, bad config).
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from vigil.forecaster.config import ForecastConfig, load_config, pick_forecast
from vigil.forecaster.detectors import (
    BASELINE_HOLD_ROWS,
    TREND_THRESHOLD,
    ZSCORE_THRESHOLD,
    rolling_zscore,
    trend_detector,
)
from vigil.forecaster.engine import Engine
from vigil.forecaster.model import FitRequest, FitResult, fit_series, quiet_prophet
from vigil.forecaster.nab import (
    STANDARD,
    FileScore,
    load_labels,
    normalised_score,
    score_file,
    window_rows,
)
from vigil.forecaster.promapi import Series

from vigil.config import ConfigError, parse_model
from vigil.service import ArgumentParser

__all__ = ["DETECTORS", "FileResult", "Replay", "backtest_config", "load_series", "main",
           "replay_engine", "run_file"]

DETECTORS = ("vigil", "zscore", "trend")
SHOWN_WARNINGS = 5  # per file on stderr; the rest are counted


class InputError(Exception):
    """An input file cannot be replayed at all (unreadable, no timestamp/value columns)."""


@dataclass
class Baselines:
    """Settings of the two Prometheus-rule baselines (committed ones by default)."""

    zscore_threshold: float = ZSCORE_THRESHOLD
    trend_threshold: float = TREND_THRESHOLD
    hold: int = BASELINE_HOLD_ROWS


@dataclass
class FileResult:
    """One replayed file: its decisions per detector and, with labels, its scores."""

    relpath: str
    rows: int
    seconds: float
    fits: int
    timestamps: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    alerts: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    nab: dict[str, FileScore] = field(default_factory=dict)
    windows: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    error: str = ""


def load_series(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read `timestamp,value` rows as (datetime64[ns], float) arrays plus per-row warnings.

    Rows are kept in file order and judged one by one, the way Prometheus ingests samples:
    a blank or non-numeric value, an unparseable timestamp, or a timestamp not after the
    previous kept row (out of order or duplicate) skips that row with a warning naming the
    file and its line. A file that is not a CSV with those columns raises InputError.
    """
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read CSV: {exc.__class__.__name__}") from None
    missing = {"timestamp", "value"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                         "(want timestamp,value)")
    if df.empty:
        raise InputError(f"{path}: no rows")
    ts = pd.to_datetime(df["timestamp"], errors="coerce", format="mixed").to_numpy(
        dtype="datetime64[ns]")
    values = pd.to_numeric(df["value"].str.strip(), errors="coerce").to_numpy(dtype=float)
    keep = np.zeros(len(df), dtype=bool)
    warnings: list[str] = []
    last: np.datetime64 | None = None
    for i in range(len(df)):
        line = i + 2  # the header is line 1
        cell = df["value"].iat[i]
        if np.isnat(ts[i]):
            warnings.append(f"{path}: line {line}: timestamp {df['timestamp'].iat[i]!r} is not "
                            "a date/time, row skipped")
        elif not np.isfinite(values[i]):
            what = "blank value" if not cell.strip() else f"non-numeric value {cell!r}"
            warnings.append(f"{path}: line {line}: {what}, row skipped")
        elif last is not None and ts[i] <= last:
            kind = "duplicate" if ts[i] == last else "out-of-order"
            warnings.append(f"{path}: line {line}: {kind} timestamp {df['timestamp'].iat[i]}, "
                            "row skipped")
        else:
            keep[i] = True
            last = ts[i]
    if not keep.any():
        raise InputError(f"{path}: no usable rows ({len(warnings)} skipped)")
    return ts[keep], values[keep], warnings


class _Rows:
    """A read-only stand-in for PrometheusClient that serves one CSV's rows up to `end`."""

    def __init__(self, seconds: np.ndarray, values: np.ndarray) -> None:
        self.seconds, self.values = seconds, values

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        lo = int(np.searchsorted(self.seconds, start, side="left"))
        hi = int(np.searchsorted(self.seconds, end, side="right"))
        return [Series({"__name__": "backtest"}, self.seconds[lo:hi], self.values[lo:hi])]

    def query(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        return []


class _FitCache:
    """fit_series memoised on the request's data and settings, optionally kept in a file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, FitResult] = {}
        if path is not None and path.is_file():
            try:
                self.entries = pickle.loads(path.read_bytes())
            except (OSError, pickle.UnpicklingError, EOFError):
                self.entries = {}
        self.fits = 0
        self.changed = False

    def __call__(self, req: FitRequest) -> FitResult:
        self.fits += 1
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(np.ascontiguousarray(req.timestamps).tobytes())
        digest.update(np.ascontiguousarray(req.values).tobytes())
        digest.update(repr((req.step, req.horizon, req.interval_width, req.daily, req.weekly,
                            req.yearly, req.max_fit_points, req.init is None)).encode())
        key = digest.hexdigest()
        if key not in self.entries:
            self.entries[key] = fit_series(req)
            self.changed = True
        return self.entries[key]

    def save(self) -> None:
        if self.path is not None and self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(pickle.dumps(self.entries))


@dataclass
class Replay:
    """The engine's flag after each row, and how many fits it made."""

    flags: np.ndarray
    fits: int


def replay_engine(seconds: np.ndarray, values: np.ndarray, cfg: ForecastConfig,
                  cache: _FitCache | None = None,
                  before_cycle: Callable[[int], None] | None = None) -> Replay:
    """Run the service's engine one cycle per row; row t's flag uses rows 0..t only.

    `before_cycle(t)`, if given, is called before row t's cycle (bench/tune_nab.py uses it
    to know which row each judged point is)."""
    from vigil.forecaster.config import ForecasterConfig

    config = ForecasterConfig(forecasts=[cfg])
    fit = cache or _FitCache(None)
    engine = Engine(config, client=_Rows(seconds, values), fit=fit,  # type: ignore[arg-type]
                    clock=lambda: float(seconds[-1]))
    state = engine.forecasts[cfg.name]
    flags = np.zeros(len(seconds), dtype=bool)
    for i, now in enumerate(seconds):
        if before_cycle is not None:
            before_cycle(i)
        engine.run_cycle(float(now))
        flags[i] = any(st.anomaly for st in state.series.values())
    return Replay(flags, fit.fits)


# settings counted in points that stand for a span of time: the backtest keeps their span
# when the file's row spacing differs from the forecast's step
TIME_IN_POINTS = ("anomaly_refractory", "calibration_window")


def backtest_config(base: ForecastConfig, seconds: np.ndarray,
                    retrain_interval: float | None) -> ForecastConfig:
    """The forecast's settings mapped to a file's rows: its step becomes the row spacing.

    The history, retrain interval and minimum history keep their durations (so 7d of history
    is 2016 rows at 5 minutes); so do the settings counted in points that stand for a span
    of time, the refractory period and the calibration window (432 points at a 5-minute step,
    36 hours, are 144 rows of a 15-minute file). The persistence rule, the hold and the
    calibration minimum stay counts of points. The horizon is at least the retrain interval,
    so every row after the first fit is judged by some fit, as in a service whose horizon
    outlasts its retrain interval.
    """
    step = float(np.median(np.diff(seconds))) if len(seconds) > 1 else base.step
    data = base.model_dump()
    data["step"] = step
    if step > 0 and step != base.step:
        for name in TIME_IN_POINTS:
            data[name] = round(data[name] * base.step / step)
        data["calibration_window"] = max(data["calibration_window"], data["calibration_min_points"])
    if retrain_interval is not None:
        data["retrain_interval"] = retrain_interval
    data["horizon"] = max(data["horizon"], data["retrain_interval"], step)
    data["history"] = max(data["history"], 3 * step)
    data["min_history"] = min(max(data["min_history"], 2 * step), data["history"])
    return ForecastConfig.model_validate(data)


def run_file(path: Path, relpath: str, labels: list[tuple[str, str]] | None,
             base: ForecastConfig, retrain_interval: float | None = 86400.0,
             cache_dir: Path | None = None, baselines: Baselines | None = None) -> FileResult:
    """Replay one file through the engine and the baselines (runs in a worker process)."""
    quiet_prophet()
    started = time.perf_counter()
    try:
        ts, y, warnings = load_series(path)
    except InputError as exc:
        empty = np.array([])
        return FileResult(relpath, 0, 0.0, 0, empty, empty, error=str(exc))
    seconds = ts.astype("datetime64[ns]").astype("int64") / 1e9
    cfg = backtest_config(base, seconds, retrain_interval)
    cache = _FitCache(cache_dir / (relpath + ".fits.pkl") if cache_dir else None)
    replay = replay_engine(seconds, y, cfg, cache)
    cache.save()
    result = FileResult(relpath, len(y), 0.0, replay.fits, ts, y, warnings=warnings)
    result.alerts["vigil"] = replay.flags.astype(int)
    b = baselines or Baselines()
    result.alerts["zscore"] = rolling_zscore(y, threshold=b.zscore_threshold, hold=b.hold)[1]
    result.alerts["trend"] = trend_detector(y, threshold=b.trend_threshold, hold=b.hold)[1]
    if labels is not None:
        result.windows = window_rows(ts, [(np.datetime64(a), np.datetime64(b)) for a, b in labels])
        result.nab = {name: score_file(result.alerts[name], result.windows, STANDARD)
                      for name in DETECTORS}
    result.seconds = time.perf_counter() - started
    return result


def write_output(result: FileResult, output_dir: Path) -> Path:
    """Write DIR/<relpath> with timestamp,value,anomaly (the replayed vigil_forecast_anomaly)."""
    out = output_dir / result.relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    stamps = pd.Series(result.timestamps).dt.strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": result.values,
                  "anomaly": result.alerts["vigil"].astype(int)}).to_csv(out, index=False)
    return out


def plot_result(result: FileResult, plot_dir: Path) -> Path:
    """Draw the series, its label windows and each detector's detections as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = (plot_dir / result.relpath).with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(14, 4))
    ts = result.timestamps
    ax.plot(ts, result.values, lw=0.7, color="#333333", label="value")
    for k, (lo, hi) in enumerate(result.windows):
        ax.axvspan(ts[lo], ts[hi], color="#f4a261", alpha=0.3, label="label window" if k == 0 else None)
    colors = {"vigil": "#d62828", "zscore": "#457b9d", "trend": "#2a9d8f"}
    span = float(np.nanmax(result.values) - np.nanmin(result.values)) or 1.0
    base = float(np.nanmax(result.values))
    for j, name in enumerate(DETECTORS):
        alerts = result.alerts[name].astype(bool)
        first = np.nonzero(alerts & ~np.concatenate([[False], alerts[:-1]]))[0]
        ax.scatter(ts[first], np.full(len(first), base + span * 0.05 * (j + 1)), marker="v",
                   color=colors[name], s=30, label=f"{name} detections ({len(first)})")
    ax.set_title(result.relpath)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=7, ncols=5,
              frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def find_inputs(paths: Sequence[Path]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Files to replay (every *.csv under a directory) with their relative paths, and notes
    on the files of a directory that are skipped because they are not *.csv."""
    found: list[tuple[Path, str]] = []
    skipped: list[str] = []
    for path in paths:
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if not p.is_file() or any(part.startswith(".") for part in p.relative_to(path).parts):
                    continue
                if p.suffix.lower() == ".csv":
                    found.append((p, p.relative_to(path).as_posix()))
                else:
                    skipped.append(f"{p}: not a .csv file, skipped")
        else:
            raise ConfigError(path, "", "input not found: want a CSV file or a directory of CSVs")
    return found, skipped


def _labels_for(relpath: str, labels: dict[str, list[tuple[str, str]]]
                ) -> list[tuple[str, str]] | None:
    if relpath in labels:
        return labels[relpath]
    matches = [k for k in labels if k.endswith("/" + relpath) or relpath.endswith("/" + k)
               or Path(k).name == relpath]
    return labels[matches[0]] if len(matches) == 1 else None


def _base_config(args: Any) -> ForecastConfig:
    if args.config_file is None:
        return parse_model(ForecastConfig, {"name": "backtest", "query": "value"}, None)
    return pick_forecast(load_config(args.config_file), args.forecast, args.config_file)


def _duration(text: str) -> float:
    import argparse

    from vigil.forecaster.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _main(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog="vigil backtest", description=__doc__)
    parser.add_argument("input", type=Path, nargs="+",
                        help="CSV files (timestamp,value) and/or directories of CSVs")
    parser.add_argument("--labels", type=Path, help="labels JSON in NAB's labels.json format")
    parser.add_argument("--config.file", dest="config_file", type=Path,
                        help="forecaster config whose forecast settings are replayed")
    parser.add_argument("--forecast", help="name of the forecast in --config.file")
    parser.add_argument("--retrain-interval", type=_duration, default=86400.0, metavar="DUR",
                        help="refit this often in the replay (default 1d)")
    parser.add_argument("--keep-retrain-interval", action="store_true",
                        help="replay the forecast's own retrain_interval (slow: many fits)")
    parser.add_argument("--output-dir", type=Path, help="write DIR/<relative path> per input")
    parser.add_argument("--fit-cache", type=Path, metavar="DIR",
                        help="keep fits in DIR so later runs with other decision settings reuse them")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="draw each series into DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.getLogger("vigil").setLevel(logging.ERROR)
    quiet_prophet()
    base = _base_config(args)
    retrain = None if args.keep_retrain_interval else args.retrain_interval
    inputs, skipped = find_inputs(args.input)
    for note in skipped:
        print(f"vigil backtest: warning: {note}", file=sys.stderr)
    if not inputs:
        raise ConfigError(args.input[0], "", "no *.csv files found")
    labels = load_labels(args.labels) if args.labels else None
    if args.labels is not None and labels is None:
        raise ConfigError(args.labels, "", "cannot read labels")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    console = Console(stderr=True)
    results: list[FileResult] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=quiet_prophet) as pool, \
            Progress("[progress.description]{task.description}", BarColumn(),
                     MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                     disable=args.no_progress) as progress:
        task = progress.add_task("backtest", total=len(inputs))
        futures = {pool.submit(run_file, path, rel,
                               _labels_for(rel, labels) if labels is not None else None,
                               base, retrain, args.fit_cache): rel for path, rel in inputs}
        for fut in as_completed(futures):
            res = fut.result()
            results.append(res)
            progress.update(task, advance=1, description=f"backtest {Path(res.relpath).name}")
            if args.output_dir and not res.error:
                write_output(res, args.output_dir)
            if args.plot and not res.error:
                plot_result(res, args.plot)
    elapsed = time.perf_counter() - started
    results.sort(key=lambda r: r.relpath)
    failed = [r for r in results if r.error]
    for r in failed:
        print(f"vigil backtest: error: {r.error}", file=sys.stderr)
    good = [r for r in results if not r.error]
    warned = [r for r in good if r.warnings]
    for r in warned:
        for text in r.warnings[:SHOWN_WARNINGS]:
            print(f"vigil backtest: warning: {text}", file=sys.stderr)
        if len(r.warnings) > SHOWN_WARNINGS:
            print(f"vigil backtest: warning: {r.relpath}: {len(r.warnings) - SHOWN_WARNINGS} "
                  "more skipped row(s)", file=sys.stderr)
    n_warn = sum(len(r.warnings) for r in good)
    rows = sum(r.rows for r in good)
    retrain_text = f"{base.retrain_interval if retrain is None else retrain:.0f}s"
    print(f"replayed {len(good)} file(s), {rows} rows, {sum(r.fits for r in good)} model fits "
          f"in {elapsed:.1f}s with {args.workers} worker(s); forecast {base.name!r}: history "
          f"{base.history:.0f}s, retrain every {retrain_text}, band {base.interval_width}, "
          f"anomaly coverage {base.anomaly_coverage}, floor {base.anomaly_floor:g} robust sd, "
          f"{base.anomaly_points} of {base.anomaly_window} points; {n_warn} row warning(s) in {len(warned)} file(s), "
          f"{len(failed)} unreadable file(s)")
    scored = [r for r in good if r.nab]
    if labels is not None:
        unlabelled = [r.relpath for r in good if not r.nab]
        if unlabelled:
            print(f"not scored (no labels): {', '.join(unlabelled)}", file=sys.stderr)
        if scored:
            print("NAB standard profile (A_tp=1.0, A_fp=0.11, A_fn=1.0)")
            table = Table()
            for col in ("detector", "score", "TP", "FP", "FN", "windows"):
                table.add_column(col, justify="right" if col != "detector" else "left")
            for name in DETECTORS:
                per = [r.nab[name] for r in scored]
                norm = normalised_score(per)
                shown = "n/a (no windows)" if math.isnan(norm) else f"{norm:.1f}"
                table.add_row(name, shown, str(sum(s.tp for s in per)),
                              str(sum(s.fp for s in per)), str(sum(s.fn for s in per)),
                              str(sum(s.windows for s in per)))
            Console(width=100).print(table)
    if failed:
        return 1
    return 3 if n_warn else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `vigil backtest` (the dispatcher handles ConfigError)."""
    return _main(argv)
