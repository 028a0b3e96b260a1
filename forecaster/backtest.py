"""`vigil backtest`: replay CSVs causally through Vigil's detector and two baselines, and score.

Each input CSV (`timestamp,value`) is walked forward in time; row t's decision uses rows up
to t only, and the model is refitted every `--retrain-every` rows the way the service
refits on its retrain interval. With `--labels` (NAB's labels.json format) it prints the
NAB standard-profile score of Vigil's detector and of two Prometheus-rule baselines
(rolling z-score, predict_linear trend), all from the same run.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from vigil.forecaster.detectors import (
    HOLD_ROWS,
    VIGIL_THRESHOLD,
    VigilDetector,
    hold_alerts,
    rolling_zscore,
    trend_detector,
)
from vigil.forecaster.model import quiet_prophet
from vigil.forecaster.nab import (
    STANDARD,
    FileScore,
    load_labels,
    normalised_score,
    score_file,
    window_rows,
)

from vigil.config import ConfigError
from vigil.service import ArgumentParser

__all__ = ["DETECTORS", "FileResult", "load_series", "main", "run_file"]

DETECTORS = ("vigil", "zscore", "trend")


class InputError(Exception):
    """An input CSV is unreadable or lacks timestamp,value columns."""


@dataclass
class FileResult:
    """One replayed file: its decisions per detector and, with labels, its scores."""

    relpath: str
    rows: int
    seconds: float
    fits: int
    timestamps: np.ndarray = field(repr=False)
    values: np.ndarray = field(repr=False)
    scores: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    alerts: dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    nab: dict[str, FileScore] = field(default_factory=dict)
    windows: list[tuple[int, int]] = field(default_factory=list)
    error: str = ""


def load_series(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read `timestamp,value` rows, sorted by time, as (datetime64[ns] array, float array)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot read CSV: {exc.__class__.__name__}") from None
    missing = {"timestamp", "value"} - set(df.columns)
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(sorted(missing))} "
                         "(want timestamp,value)")
    if df.empty:
        raise InputError(f"{path}: no rows")
    try:
        ts = pd.to_datetime(df["timestamp"])
    except (ValueError, TypeError):
        raise InputError(f"{path}: timestamp column is not a date/time") from None
    values = pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float)
    if not pd.Series(ts).is_monotonic_increasing:
        raise InputError(f"{path}: timestamps are not in increasing order")
    if np.isnan(values).any():  # carry the last value forward: causal, keeps rows aligned
        values = pd.Series(values).ffill().fillna(0.0).to_numpy()
    return ts.to_numpy(dtype="datetime64[ns]"), values


def run_file(path: Path, relpath: str, labels: list[tuple[str, str]] | None,
             retrain_every: int) -> FileResult:
    """Replay one file through every detector (runs in a worker process)."""
    quiet_prophet()
    started = time.perf_counter()
    try:
        ts, y = load_series(path)
    except InputError as exc:
        empty = np.array([])
        return FileResult(relpath, 0, 0.0, 0, empty, empty, error=str(exc))
    seconds = ts.astype("datetime64[ns]").astype("int64") / 1e9
    det = VigilDetector(retrain_every=retrain_every)
    f, scale, fits = det.forecast(seconds, y)
    vigil_score = det.score_from_forecast(seconds, y, f, scale)
    result = FileResult(relpath, len(y), 0.0, fits, ts, y)
    result.scores["vigil"] = vigil_score
    result.alerts["vigil"] = hold_alerts(vigil_score >= det.threshold, HOLD_ROWS)
    result.scores["zscore"], result.alerts["zscore"] = rolling_zscore(y)
    result.scores["trend"], result.alerts["trend"] = trend_detector(y)
    if labels is not None:
        result.windows = window_rows(ts, [(np.datetime64(a), np.datetime64(b)) for a, b in labels])
        result.nab = {name: score_file(result.alerts[name], result.windows, STANDARD)
                      for name in DETECTORS}
    result.seconds = time.perf_counter() - started
    return result


def write_output(result: FileResult, output_dir: Path) -> Path:
    """Write DIR/<relpath> with timestamp,value,anomaly_score,alert for Vigil's detector."""
    out = output_dir / result.relpath
    out.parent.mkdir(parents=True, exist_ok=True)
    stamps = pd.Series(result.timestamps).dt.strftime("%Y-%m-%d %H:%M:%S")
    pd.DataFrame({"timestamp": stamps, "value": result.values,
                  "anomaly_score": np.round(result.scores["vigil"], 6),
                  "alert": result.alerts["vigil"].astype(int)}).to_csv(out, index=False)
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


def find_inputs(path: Path) -> list[tuple[Path, str]]:
    """One CSV, or every *.csv under a directory, with its path relative to the input."""
    if path.is_file():
        return [(path, path.name)]
    if path.is_dir():
        return [(p, p.relative_to(path).as_posix()) for p in sorted(path.rglob("*.csv"))]
    raise ConfigError(path, "", "input not found: want a CSV file or a directory of CSVs")


def _labels_for(relpath: str, labels: dict[str, list[tuple[str, str]]]
                ) -> list[tuple[str, str]] | None:
    if relpath in labels:
        return labels[relpath]
    matches = [k for k in labels if k.endswith("/" + relpath) or relpath.endswith("/" + k)
               or Path(k).name == relpath]
    return labels[matches[0]] if len(matches) == 1 else None


def _main(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog="vigil backtest", description=__doc__)
    parser.add_argument("input", type=Path, help="a CSV (timestamp,value) or a directory of CSVs")
    parser.add_argument("--labels", type=Path, help="labels JSON in NAB's labels.json format")
    parser.add_argument("--output-dir", type=Path, help="write DIR/<relative path> per input")
    parser.add_argument("--retrain-every", type=int, default=288, metavar="N",
                        help="refit the model every N rows (default 288: a day at 5 minutes)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="draw each series into DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.retrain_every < 1:
        parser.error("--retrain-every must be at least 1")
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.getLogger("vigil").setLevel(logging.WARNING)
    quiet_prophet()
    inputs = find_inputs(args.input)
    if not inputs:
        raise ConfigError(args.input, "", "no *.csv files found")
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
                               args.retrain_every): rel for path, rel in inputs}
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
    rows = sum(r.rows for r in good)
    print(f"replayed {len(good)} file(s), {rows} rows, {sum(r.fits for r in good)} model fits "
          f"in {elapsed:.1f}s with {args.workers} worker(s); committed threshold "
          f"{VIGIL_THRESHOLD}, alert hold {HOLD_ROWS} rows")
    scored = [r for r in good if r.nab]
    if labels is not None:
        unlabelled = [r.relpath for r in good if not r.nab]
        if unlabelled:
            print(f"not scored (no labels): {', '.join(unlabelled)}", file=sys.stderr)
        if scored:
            table = Table(title="NAB standard profile (A_tp=1.0, A_fp=0.11, A_fn=1.0)")
            for col in ("detector", "score", "TP", "FP", "FN", "windows"):
                table.add_column(col, justify="right" if col != "detector" else "left")
            for name in DETECTORS:
                per = [r.nab[name] for r in scored]
                norm = normalised_score(per)
                shown = "n/a (no windows)" if math.isnan(norm) else f"{norm:.1f}"
                table.add_row(name, shown, str(sum(s.tp for s in per)),
                              str(sum(s.fp for s in per)), str(sum(s.fn for s in per)),
                              str(sum(s.windows for s in per)))
            Console().print(table)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for `vigil backtest` (the dispatcher handles ConfigError)."""
    return _main(argv)
