"""`vigil forecast`: forecast one query now, print each series' ETA, optionally plot it."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vigil.forecaster.config import ForecastConfig, ForecasterConfig, load_config, pick_forecast
from vigil.forecaster.engine import Engine
from vigil.forecaster.model import quiet_prophet

from vigil.config import parse_model
from vigil.service import ArgumentParser

__all__ = ["forecast_main", "plot_forecast"]

MAX_PLOTTED = 6


def plot_forecast(snapshot: dict, history: dict[tuple, tuple], out: Path,
                  now: float | None = None) -> Path:
    """Draw actual series, band, threshold and predicted crossing for up to 6 series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    series = [s for s in snapshot["series"] if "grid" in s][:MAX_PLOTTED]
    if not series:
        raise ValueError("nothing to plot: no series has been forecast")
    fig, axes = plt.subplots(len(series), 1, figsize=(11, 3.6 * len(series)), squeeze=False)
    threshold = snapshot["threshold"]
    for ax, s in zip(axes[:, 0], series, strict=False):
        key = tuple(sorted(s["labels"].items()))
        ts, vs = history.get(key, (np.array([]), np.array([])))
        to_dt = lambda a: np.asarray(a, dtype="datetime64[s]")
        ax.plot(to_dt(ts), vs, color="#222222", lw=0.9, label="actual")
        grid = s["grid"]
        yhat, lo, hi = s["band"]
        ax.plot(to_dt(grid), yhat, color="#1d4ed8", lw=1.2, label="forecast (yhat)")
        ax.fill_between(to_dt(grid), lo, hi, color="#93c5fd", alpha=0.45, label="band")
        limit = s.get("threshold")
        if threshold is not None and limit is not None:
            ax.axhline(limit, color="#dc2626", ls="--", lw=1,
                       label=f"threshold ({threshold['direction']})")
            eta = s["threshold_eta_seconds"]
            if math.isfinite(eta):
                crossing = np.datetime64(int((now or time.time()) + eta), "s")
                ax.axvline(crossing, color="#dc2626", lw=1.2)
                ax.annotate(f"crossing in {eta / 3600:.1f} h", (crossing, limit),
                            textcoords="offset points", xytext=(5, 5), color="#dc2626")
        title = ", ".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) or "(no labels)"
        ax.set_title(f"{snapshot['name']}: {title}", fontsize=9)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _format_eta(eta: float) -> str:
    return "+Inf (no crossing within the horizon)" if math.isinf(eta) else f"{eta:.0f}s"


def forecast_main(argv: Sequence[str] | None = None) -> int:
    """Fit one forecast (from --config.file or flags), print it, and draw it with --plot."""
    parser = ArgumentParser(prog="vigil forecast", description=__doc__)
    parser.add_argument("--config.file", dest="config_file", type=Path,
                        help="forecaster config; use with --forecast NAME")
    parser.add_argument("--forecast", help="name of the forecast in the config file")
    parser.add_argument("--query", help="PromQL query (instead of a config file)")
    parser.add_argument("--history", default="1d", help="history window (default 1d)")
    parser.add_argument("--step", default="5m", help="step (default 5m)")
    parser.add_argument("--horizon", default="6h", help="horizon (default 6h)")
    parser.add_argument("--threshold", type=float, help="threshold value")
    parser.add_argument("--direction", choices=("above", "below"), default="above")
    parser.add_argument("--prometheus.url", dest="prometheus_url",
                        help="Prometheus base URL (default: config file, else http://127.0.0.1:9090)")
    parser.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the forecast as PNG")
    args = parser.parse_args(argv)
    quiet_prophet()
    logging.getLogger("vigil.forecaster.engine").setLevel(logging.ERROR)  # errors printed below
    if args.config_file is not None:
        config = load_config(args.config_file)
        config.forecasts = [pick_forecast(config, args.forecast, args.config_file)]
    elif args.query:
        forecast: dict = {"name": "adhoc", "query": args.query, "history": args.history,
                          "step": args.step, "horizon": args.horizon,
                          "min_history": min(3600.0, _seconds(args.history))}
        if args.threshold is not None:
            forecast["threshold"] = {"value": args.threshold, "direction": args.direction}
        config = parse_model(ForecasterConfig, {"forecasts": [forecast]}, None)
    else:
        parser.error("give --config.file (and --forecast) or --query")
    if args.prometheus_url:
        config.prometheus.url = args.prometheus_url
    engine = Engine(config)
    cfg: ForecastConfig = config.forecasts[0]
    history: dict[tuple, tuple] = {}
    original = engine.client.query_range

    def capture(query: str, start: float, end: float, step: float) -> list:
        from vigil.forecaster.promapi import clean_series

        result = original(query, start, end, step)
        for s in result:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "__name__"))
            history[key] = clean_series(s.timestamps, s.values, counter=False)
        return result

    engine.client.query_range = capture  # type: ignore[method-assign]
    now = engine.clock()
    engine.run_cycle(now)
    snap = engine.snapshot(now)[0]
    if snap["last_error"] and not snap["series"]:
        print(f"vigil forecast: error: {snap['last_error']}", file=sys.stderr)
        return 1
    print(f"forecast {cfg.name}: {len(snap['series'])} series, horizon {cfg.horizon:.0f}s")
    for s in snap["series"]:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) or "{}"
        if "yhat" not in s:
            print(f"  {labels}: {s['status']} {s['detail']}")
            continue
        line = (f"  {labels}: now {s['last_value']:.6g}, yhat {s['yhat']:.6g} "
                f"[{s['yhat_lower']:.6g}, {s['yhat_upper']:.6g}]")
        if s.get("threshold") is not None:
            line += f", threshold {s['threshold']:.6g} ETA {_format_eta(s['threshold_eta_seconds'])}"
        print(line)
    if args.plot:
        try:
            out = plot_forecast(snap, history, args.plot, now)
        except ValueError as exc:
            print(f"vigil forecast: error: {exc}", file=sys.stderr)
            return 1
        print(f"wrote {out}")
    return 0


def _seconds(text: str) -> float:
    from vigil.forecaster.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        return 3600.0
