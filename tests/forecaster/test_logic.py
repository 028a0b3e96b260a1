"""Pure logic of the forecaster: chunking, cleaning, ETA, persistence, sharding, NAB scoring."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from vigil.forecaster.config import AuthConfig
from vigil.forecaster.detectors import hold_alerts
from vigil.forecaster.engine import series_labels
from vigil.forecaster.model import FitResult, anomaly_flag, band_at, shard_of, threshold_eta
from vigil.forecaster.nab import normalised_score, score_file
from vigil.forecaster.promapi import chunk_ranges, clean_series, looks_like_counter


def test_chunks_stay_under_prometheus_point_limit_and_cover_the_range() -> None:
    chunks = chunk_ranges(0.0, 86400.0, 1.0)
    assert all((hi - lo) / 1.0 + 1 < 11_000 for lo, hi in chunks)
    assert chunks[0][0] == 0.0 and chunks[-1][1] == 86400.0
    # consecutive, no overlap and no gap: the next chunk starts one step after the last
    assert all(b[0] == a[1] + 1.0 for a, b in itertools.pairwise(chunks))


def test_clean_series_drops_nan_and_duplicates_and_undoes_counter_resets() -> None:
    ts = np.array([3.0, 1.0, 2.0, 2.0, 4.0, 5.0])
    vs = np.array([12.0, 10.0, np.nan, 11.0, 2.0, 4.0])  # sorted: 10, nan, 11, 12, 2 (reset), 4
    t, v = clean_series(ts, vs, counter=True)
    assert t.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert v.tolist() == [10.0, 11.0, 12.0, 14.0, 16.0]
    _, raw = clean_series(ts, vs, counter=False)
    assert raw.tolist() == [10.0, 11.0, 12.0, 2.0, 4.0]


def test_counter_detection_needs_a_counter_name_and_monotonic_values() -> None:
    assert looks_like_counter("http_requests_total", np.array([1.0, 2.0, 3.0, 0.5, 1.0]))
    assert not looks_like_counter("process_resident_memory_bytes", np.array([1.0, 2.0, 3.0]))
    assert not looks_like_counter("x_total", np.array([5.0, 1.0, 6.0, 2.0, 7.0, 1.0]))


def _result(grid: np.ndarray, yhat: np.ndarray, half: float) -> FitResult:
    return FitResult("f", {}, float(grid[0]), grid, yhat, yhat - half, yhat + half)


def test_threshold_eta_interpolates_first_crossing_of_the_band() -> None:
    grid = np.arange(0.0, 3601.0, 60.0)
    res = _result(grid, 100.0 + grid * 0.01, half=1.0)  # upper = 101 + 0.01 t
    # upper reaches 120 at t = 1900; from now=100 that is 1800 s
    assert threshold_eta(res, 100.0, 120.0, "above") == pytest.approx(1800.0, abs=1e-6)
    assert threshold_eta(res, 0.0, 1000.0, "above") == math.inf
    assert threshold_eta(res, 0.0, 100.5, "above") == 0.0  # already across
    # below: lower = 99 + 0.01 t never drops, so no crossing
    assert threshold_eta(res, 0.0, 50.0, "below") == math.inf
    falling = _result(grid, 100.0 - grid * 0.01, half=1.0)  # lower = 99 - 0.01 t hits 80 at 1900
    assert threshold_eta(falling, 0.0, 80.0, "below") == pytest.approx(1900.0, abs=1e-6)


def test_band_at_is_nan_outside_the_forecast_grid() -> None:
    grid = np.array([0.0, 60.0, 120.0])
    res = _result(grid, np.array([1.0, 2.0, 3.0]), 0.5)
    yhat, lo, hi = band_at(res, np.array([30.0, 500.0]))
    assert yhat[0] == pytest.approx(1.5) and lo[0] == pytest.approx(1.0)
    assert math.isnan(yhat[1]) and math.isnan(hi[1])


def test_persistence_rule_ignores_a_single_outlier() -> None:
    assert not anomaly_flag(np.array([0, 0, 1, 0, 0], bool), points=3, window=5)
    assert not anomaly_flag(np.array([1, 0, 1, 0, 0], bool), points=3, window=5)
    assert anomaly_flag(np.array([0, 0, 1, 1, 1], bool), points=3, window=5)
    assert anomaly_flag(np.array([1, 0, 1, 0, 1], bool), points=3, window=5)


def test_shards_are_stable_and_split_series_between_instances() -> None:
    labels = [{"job": "demo", "instance": f"10.0.0.{i}:80"} for i in range(200)]
    shard_a = [shard_of("memory", lab, 2) for lab in labels]
    assert shard_a == [shard_of("memory", dict(reversed(list(lab.items()))), 2) for lab in labels]
    counts = np.bincount(shard_a, minlength=2)
    assert counts.min() > 60  # both shards get a fair share


def test_published_labels_drop_name_and_rename_clashes() -> None:
    out = series_labels({"__name__": "x", "job": "demo", "forecast": "a", "bound": "b"})
    assert out == {"job": "demo", "exported_forecast": "a", "exported_bound": "b"}


def test_auth_builds_bearer_header_or_basic_auth(tmp_path, monkeypatch) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    headers, auth = AuthConfig(bearer_token_file=token).headers_and_auth()
    assert headers == {"Authorization": "Bearer s3cret"} and auth is None
    monkeypatch.setenv("PROM_PW", "pw")
    headers, auth = AuthConfig(username="u", password_env="PROM_PW").headers_and_auth()
    assert headers == {} and auth == ("u", "pw")


def test_hold_keeps_an_alert_firing_and_is_causal() -> None:
    trig = np.array([0, 1, 0, 0, 0, 0, 1, 0], bool)
    assert hold_alerts(trig, 3).tolist() == [0, 1, 1, 1, 0, 0, 1, 1]


def test_nab_scoring_by_hand() -> None:
    n = 1000  # probation 150 rows
    windows = [(500, 599)]
    alerts = np.zeros(n, int)
    # no detection: one missed window
    assert score_file(alerts, windows).raw == pytest.approx(-1.0)
    # detection at the left edge of the window scores ~A_tp; a run counts once
    alerts[500:520] = 1
    s = score_file(alerts, windows)
    assert (s.tp, s.fp, s.fn) == (1, 0, 0) and s.raw == pytest.approx(1.0)
    # a detection before any window costs A_fp; one during probation costs nothing
    alerts[10] = 1
    alerts[300] = 1
    s = score_file(alerts, windows)
    assert s.fp == 1 and s.raw == pytest.approx(1.0 - 0.11)
    # far after the window (p > 3) costs A_fp; right after it costs almost nothing
    late = np.zeros(n, int)
    late[500] = 1
    late[990] = 1
    assert score_file(late, windows).raw == pytest.approx(1.0 - 0.11)
    near = np.zeros(n, int)
    near[500] = 1
    near[601] = 1
    assert score_file(near, windows).raw == pytest.approx(1.0 + 0.11 * (2 / (1 + math.exp(5 * 2 / 99)) - 1))
    assert normalised_score([score_file(alerts, windows)]) == pytest.approx(100 * (0.89 + 1) / 2)
