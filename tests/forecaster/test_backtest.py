"""`vigil backtest`: it replays the service's engine, strictly causally, robust to bad rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from vigil.forecaster.backtest import (
    DETECTORS,
    backtest_config,
    load_series,
    replay_engine,
    run_file,
)
from vigil.forecaster.config import ForecastConfig, ForecasterConfig
from vigil.forecaster.engine import Engine

from tests.forecaster.promdata import start_with_series


def _write_series(path: Path, values: np.ndarray, freq: str = "5min") -> None:
    ts = pd.date_range("2024-03-01", periods=len(values), freq=freq)
    pd.DataFrame({"timestamp": ts.strftime("%Y-%m-%d %H:%M:%S"), "value": values}).to_csv(
        path, index=False)


def _synthetic(n: int = 1100, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 20 + 5 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.6, n)


def _forecast(**extra: Any) -> ForecastConfig:
    return ForecastConfig.model_validate({"name": "backtest", "query": "value", **extra})


@pytest.mark.integration
def test_backtest_and_the_service_engine_flag_the_same_rows(
        prometheus_factory: Callable[..., Any], tmp_path: Path) -> None:
    """The same recorded series, read from a real Prometheus by the engine and from a CSV by
    the backtest, with the same forecast settings: the flag rises on exactly the same rows."""
    step = 60.0
    n = 720  # 12 hours at 1 minute
    rng = np.random.default_rng(5)
    start = float(1_700_000_000 // 3600 * 3600)
    ts = start + step * np.arange(n)
    values = 50 + 5 * np.sin(2 * np.pi * np.arange(n) / 240) + rng.normal(0, 0.5, n)
    values[430:470] += 40  # a level shift beyond the fits' own errors (up to ~10 here)
    values[600] += 50  # and one spike
    _, url = start_with_series(prometheus_factory, tmp_path,
                               [("recorded_value", {"job": "demo"}, ts, values)])
    settings = {"query": "recorded_value", "step": "1m", "history": "6h", "horizon": "2h",
                "min_history": "1h", "retrain_interval": "1h",
                "seasonality": {"daily": False, "weekly": False},
                "calibration_min_points": 40}
    config = ForecasterConfig.model_validate(
        {"prometheus": {"url": url, "retries": 1, "timeout": "10s"},
         "forecasts": [{"name": "recorded", **settings}]})
    engine = Engine(config)
    state = engine.forecasts["recorded"]
    service_flags = np.zeros(n, dtype=bool)
    for i, now in enumerate(ts):
        engine.run_cycle(float(now))
        service_flags[i] = any(st.anomaly for st in state.series.values())

    csv = tmp_path / "recorded.csv"
    pd.DataFrame({"timestamp": pd.to_datetime(ts, unit="s").strftime("%Y-%m-%d %H:%M:%S"),
                  "value": [repr(float(v)) for v in values]}).to_csv(csv, index=False)
    stamps, rows, warnings = load_series(csv)
    assert not warnings and len(rows) == n
    seconds = stamps.astype("int64") / 1e9
    cfg = backtest_config(config.forecasts[0], seconds, retrain_interval=None)
    assert cfg.model_dump() == config.forecasts[0].model_dump()  # nothing needed remapping
    replay = replay_engine(seconds, rows, cfg)

    assert replay.fits >= 10
    assert service_flags[430:470].any()  # the shift is flagged, so the comparison means something
    assert not service_flags[:430].all()
    assert np.array_equal(np.nonzero(replay.flags)[0], np.nonzero(service_flags)[0])


def test_settings_that_stand_for_time_keep_their_span_at_another_row_spacing() -> None:
    base = _forecast()  # the defaults, for a 5-minute step
    quarter = 1_700_000_000 + 900.0 * np.arange(100)  # rows every 15 minutes
    cfg = backtest_config(base, quarter, retrain_interval=86400.0)
    assert cfg.step == 900.0 and cfg.history == base.history
    # 432 points of 5 minutes are 36 hours: 144 rows of 15 minutes; 576 points are 192 rows
    assert (cfg.anomaly_refractory, cfg.calibration_window) == (144, 192)
    # counts of points stay counts
    assert (cfg.anomaly_points, cfg.anomaly_window, cfg.anomaly_hold,
            cfg.calibration_min_points) == (base.anomaly_points, base.anomaly_window,
                                            base.anomaly_hold, base.calibration_min_points)
    daily = backtest_config(base, 1_700_000_000 + 86400.0 * np.arange(100), 86400.0)
    # 2 days at a daily step would be 2 residuals: never fewer than the calibration minimum
    assert daily.calibration_window == base.calibration_min_points
    assert daily.anomaly_refractory == 2
    same = backtest_config(base, 1_700_000_000 + 300.0 * np.arange(100), 86400.0)
    assert (same.anomaly_refractory, same.calibration_window) == (432, 576)


def test_changing_future_rows_does_not_change_past_decisions(tmp_path: Path) -> None:
    values = _synthetic(2600)
    cut = 2000
    changed = values.copy()
    changed[cut:] = changed[cut:] * 3 + 40  # a wild future
    _write_series(tmp_path / "a.csv", values)
    _write_series(tmp_path / "b.csv", changed)
    base = _forecast()
    # refit every 200 rows so fits land before and after the cut
    a = run_file(tmp_path / "a.csv", "a.csv", None, base, retrain_interval=200 * 300.0)
    b = run_file(tmp_path / "b.csv", "b.csv", None, base, retrain_interval=200 * 300.0)
    assert a.fits >= 10
    for name in DETECTORS:
        assert np.array_equal(a.alerts[name][:cut], b.alerts[name][:cut]), name
    # and the future did change something, so the test can fail
    assert b.alerts["vigil"][cut:].any()
    assert not np.array_equal(a.alerts["vigil"][cut:], b.alerts["vigil"][cut:])


def test_bad_rows_are_skipped_one_by_one_with_a_warning_naming_file_and_line(
        tmp_path: Path) -> None:
    path = tmp_path / "messy.csv"
    path.write_text("timestamp,value\n"
                    "2024-03-01 00:00:00,1.0\n"
                    "2024-03-01 00:05:00,\n"            # line 3: blank
                    "2024-03-01 00:10:00,n/a\n"         # line 4: not a number
                    "2024-03-01 00:15:00,2.0\n"
                    "2024-03-01 00:15:00,2.5\n"         # line 6: duplicate
                    "2024-03-01 00:12:00,3.0\n"         # line 7: backwards
                    "yesterday,4.0\n"                   # line 8: not a time
                    "2024-03-01 00:20:00,5.0\n")
    ts, values, warnings = load_series(path)
    assert values.tolist() == [1.0, 2.0, 5.0]
    assert np.all(np.diff(ts) > np.timedelta64(0))
    assert len(warnings) == 5
    expected = [("line 3", "blank value"), ("line 4", "non-numeric value 'n/a'"),
                ("line 6", "duplicate timestamp"), ("line 7", "out-of-order timestamp"),
                ("line 8", "is not a date/time")]
    for text, (line, what) in zip(warnings, expected, strict=True):
        assert text.startswith(f"{path}: {line}: ") and what in text, text


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil.cli", "backtest", *args, "--no-progress"],
                          check=False, capture_output=True, text=True, timeout=600)


def test_a_backwards_timestamp_and_a_non_csv_file_do_not_stop_the_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    values = _synthetic(1200, seed=3)
    _write_series(data / "good.csv", values)
    _write_series(data / "backwards.csv", _synthetic(1200, seed=4))
    lines = (data / "backwards.csv").read_text().splitlines()
    lines[501] = "2024-03-01 00:00:00," + lines[501].split(",")[1]  # one clock jump back
    (data / "backwards.csv").write_text("\n".join(lines) + "\n")
    (data / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\xff\xfe")
    (data / "notes.txt").write_text("not data\n")
    stamps = pd.date_range("2024-03-01", periods=1200, freq="5min")
    labels = {"good.csv": [[str(stamps[1000]), str(stamps[1100])]], "backwards.csv": []}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    proc = _cli(str(data), "--labels", str(tmp_path / "labels.json"))
    assert proc.returncode == 1, proc.stderr  # a file could not be read at all
    assert f"error: {data / 'image.csv'}: cannot read CSV" in proc.stderr
    assert f"{data / 'backwards.csv'}: line 502: out-of-order timestamp" in proc.stderr
    assert f"{data / 'notes.txt'}: not a .csv file, skipped" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "replayed 2 file(s), 2399 rows" in proc.stdout
    assert "1 row warning(s) in 1 file(s), 1 unreadable file(s)" in proc.stdout
    for name in DETECTORS:
        assert name in proc.stdout
    # only row warnings: every file replayed, exit 3; several inputs, files or directories
    (data / "image.csv").unlink()
    proc = _cli(str(data / "good.csv"), str(data))
    assert proc.returncode == 3, proc.stderr
    assert "replayed 3 file(s)" in proc.stdout
    proc = _cli(str(data / "good.csv"))
    assert proc.returncode == 0, proc.stderr


def test_backtest_writes_outputs_scores_and_plots(tmp_path: Path) -> None:
    data = tmp_path / "data" / "synthetic"
    data.mkdir(parents=True)
    values = _synthetic(2000, seed=11)
    values[1700:] += 15  # a level shift
    _write_series(data / "shift.csv", values)
    _write_series(data / "quiet.csv", _synthetic(2000, seed=12))
    stamps = pd.date_range("2024-03-01", periods=2000, freq="5min")
    labels = {"synthetic/shift.csv": [[str(stamps[1660]), str(stamps[1760])]],
              "synthetic/quiet.csv": []}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "out"
    proc = _cli(str(tmp_path / "data"), "--labels", str(tmp_path / "labels.json"),
                "--output-dir", str(out), "--plot", str(tmp_path / "png"))
    assert proc.returncode == 0, proc.stderr
    written = pd.read_csv(out / "synthetic" / "shift.csv")
    assert list(written.columns) == ["timestamp", "value", "anomaly"]
    assert len(written) == 2000
    assert set(written["anomaly"].unique()) <= {0, 1}
    assert written["anomaly"].iloc[1700:1760].any()  # the shift is caught inside its window
    assert not written["anomaly"].iloc[864:1700].any()
    quiet = pd.read_csv(out / "synthetic" / "quiet.csv")
    assert quiet["anomaly"].iloc[864:].sum() == 0
    assert "NAB standard profile" in proc.stdout
    assert (tmp_path / "png" / "synthetic" / "shift.png").stat().st_size > 5_000
