"""The forecaster against a real Prometheus holding synthetic series (backfilled with promtool).

Series: a linear leak (known crossing time), a daily-seasonal series (must not alert), a
level shift (must be flagged within a few steps). Fits are few and series short.
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vigil.forecaster.config import ForecasterConfig
from vigil.forecaster.engine import Engine
from vigil.forecaster.model import quiet_prophet
from vigil.forecaster.promapi import PrometheusClient, PrometheusError, PrometheusUnavailable
from vigil.forecaster.service import Settings, create_app

from tests.forecaster.promdata import start_with_series

pytestmark = pytest.mark.integration

NOW = float(int(time.time() // 300 * 300))  # aligned so every step lands on a sample
LEAK_SLOPE = 1000.0  # bytes per second
LEAK_ETA = 4 * 3600.0  # the true line crosses the threshold this long after NOW
LEAK_START = 100e6
SHIFT_AT = NOW - 600.0


def _leak() -> tuple[np.ndarray, np.ndarray, float]:
    ts = np.arange(NOW - 6 * 3600, NOW + 1, 60.0)
    rng = np.random.default_rng(1)
    values = LEAK_START + LEAK_SLOPE * (ts - ts[0]) + rng.normal(0, 2e5, len(ts))
    threshold = LEAK_START + LEAK_SLOPE * (NOW - ts[0]) + LEAK_SLOPE * LEAK_ETA
    return ts, values, threshold


def _seasonal() -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(NOW - 3 * 86400, NOW + 1, 300.0)
    rng = np.random.default_rng(2)
    return ts, 50 + 10 * np.sin(2 * np.pi * ts / 86400) + rng.normal(0, 0.5, len(ts))


def _shift() -> tuple[np.ndarray, np.ndarray]:
    ts = np.arange(NOW - 12 * 3600, NOW + 1, 60.0)
    rng = np.random.default_rng(3)
    values = 0.1 + rng.normal(0, 0.005, len(ts))
    values[ts >= SHIFT_AT] += 0.1
    return ts, values


@pytest.fixture
def prometheus_proc(prometheus_factory: Callable[..., Any], tmp_path: Path) -> tuple[Any, str]:
    """A real Prometheus holding the synthetic series: (process, base URL)."""
    leak_ts, leak_vs, _ = _leak()
    s_ts, s_vs = _seasonal()
    sh_ts, sh_vs = _shift()
    return start_with_series(prometheus_factory, tmp_path, [
        ("synthetic_memory_bytes", {"job": "demo", "instance": "a"}, leak_ts, leak_vs),
        ("synthetic_requests", {"job": "demo"}, s_ts, s_vs),
        ("synthetic_latency_seconds", {"job": "demo"}, sh_ts, sh_vs),
        ("synthetic_limit_bytes", {"job": "demo", "instance": "a"}, leak_ts,
         np.full(len(leak_ts), _leak()[2])),
    ])


@pytest.fixture
def prometheus(prometheus_proc: tuple[Any, str]) -> str:
    return prometheus_proc[1]


def _config(url: str, **forecasts: dict[str, Any]) -> ForecasterConfig:
    return ForecasterConfig.model_validate({
        "prometheus": {"url": url, "retries": 1, "backoff_max": "1s", "timeout": "10s"},
        "forecasts": [{"name": name, **body} for name, body in forecasts.items()],
    })


LEAK = {"query": "synthetic_memory_bytes", "history": "6h", "step": "1m", "horizon": "8h",
        "threshold": {"query": "synthetic_limit_bytes", "direction": "above"},
        "seasonality": {"daily": False, "weekly": False}}
SEASONAL = {"query": "synthetic_requests", "history": "3d", "step": "5m", "horizon": "1d",
            "threshold": {"value": 70}, "seasonality": {"daily": True, "weekly": False}}


def test_leak_eta_within_ten_percent_and_seasonal_series_stays_quiet(prometheus: str) -> None:
    config = _config(prometheus, leak=LEAK, seasonal=SEASONAL)
    with ProcessPoolExecutor(2, initializer=quiet_prophet) as pool:
        engine = Engine(config, executor=pool)
        engine.run_cycle(NOW)
        # the next cycles check new points against the band without refitting
        engine.run_cycle(NOW + 300)
    snap = {f["name"]: f for f in engine.snapshot(NOW)}
    leak = snap["leak"]["series"][0]
    assert leak["labels"] == {"job": "demo", "instance": "a"}
    assert leak["status"] == "ok", leak
    assert leak["threshold"] == pytest.approx(_leak()[2])  # read via the threshold query
    assert abs(leak["threshold_eta_seconds"] - LEAK_ETA) <= 0.1 * LEAK_ETA, leak
    seasonal = snap["seasonal"]["series"][0]
    assert seasonal["status"] == "ok"
    assert math.isinf(seasonal["threshold_eta_seconds"])  # no false threshold alert
    assert seasonal["anomaly"] is False
    assert seasonal["yhat_lower"] < seasonal["yhat"] < seasonal["yhat_upper"]
    assert snap["leak"]["errors_total"] == 0 and snap["seasonal"]["last_fit_timestamp"] == NOW


def test_level_shift_raises_the_anomaly_flag_within_a_few_steps(prometheus: str) -> None:
    config = _config(prometheus, latency={
        "query": "synthetic_latency_seconds", "history": "12h", "step": "1m", "horizon": "2h",
        "retrain_interval": "2h", "seasonality": {"daily": False, "weekly": False},
        "anomaly_points": 3, "anomaly_window": 5, "calibration_min_points": 40})
    engine = Engine(config)
    engine.run_cycle(SHIFT_AT - 3000)  # fit 50 minutes before the shift
    # the 49 minutes before the shift calibrate the band (out-of-sample residuals)
    for t in np.arange(SHIFT_AT - 2700, SHIFT_AT - 59, 300.0):
        engine.run_cycle(float(t))
        assert engine.snapshot(float(t))[0]["series"][0]["anomaly"] is False
    assert len(next(iter(engine.forecasts["latency"].series.values())).residuals) >= 40
    flagged_after = None
    for k in range(8):
        engine.run_cycle(SHIFT_AT + 60 * k)
        series = engine.snapshot(SHIFT_AT + 60 * k)[0]["series"][0]
        if series["anomaly"]:
            flagged_after = k + 1  # points after the shift seen so far
            break
    assert flagged_after is not None and flagged_after <= 5
    # the persistence rule needs 3 points out of the band: one shifted point is not enough
    assert flagged_after >= 3


def test_too_little_history_is_reported_not_forecast(prometheus: str) -> None:
    config = _config(prometheus, short={"query": "synthetic_memory_bytes", "history": "6h",
                                        "step": "1m", "min_history": "5h"})
    engine = Engine(config)
    engine.run_cycle(NOW - 5 * 3600)  # only one hour of data exists before this time
    series = engine.snapshot(NOW)[0]["series"][0]
    assert series["status"] == "insufficient_history"
    assert "yhat" not in series


def test_range_reads_are_chunked_under_the_point_limit(prometheus: str) -> None:
    client = PrometheusClient(_config(prometheus, x={"query": "up"}).prometheus)
    # 6 h at 1 s is 21,601 points per series: one request would be refused by Prometheus
    with pytest.raises(PrometheusError):
        client._get("/api/v1/query_range", {"query": "synthetic_memory_bytes",
                                             "start": str(NOW - 6 * 3600), "end": str(NOW),
                                             "step": "1"})
    series = client.query_range("synthetic_memory_bytes", NOW - 6 * 3600, NOW, 1.0)
    assert len(series) == 1
    ts = series[0].timestamps
    assert len(ts) == 6 * 3600 + 1 and np.all(np.diff(ts) == 1.0)


def test_unreachable_prometheus_retries_with_bounded_backoff() -> None:
    from vigil.procs import free_port

    config = _config(f"http://127.0.0.1:{free_port()}", x={"query": "up"}).prometheus
    config.retries = 4
    config.backoff_max = 1.5
    sleeps: list[float] = []
    client = PrometheusClient(config, sleep=sleeps.append)
    with pytest.raises(PrometheusUnavailable):
        client.query_range("up", NOW - 600, NOW, 60)
    assert sleeps == [0.5, 1.0, 1.5, 1.5]


async def test_metrics_json_and_serving_stale_forecasts(prometheus_proc: tuple[Any, str],
                                                        aiohttp_client: Any) -> None:
    proc, url = prometheus_proc
    config = _config(url, leak=LEAK)
    config.interval = 3600  # one cycle at start; the test drives the rest
    engine = Engine(config)
    app = create_app(Settings(config, use_processes=False), engine)
    client = await aiohttp_client(app)
    deadline = time.monotonic() + 60
    while engine.cycles == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert (await client.get("/-/ready")).status == 200
    text = await (await client.get("/metrics")).text()
    for name in ("vigil_forecast{", "vigil_forecast_threshold_eta_seconds{",
                 "vigil_forecast_anomaly{", "vigil_forecast_fit_duration_seconds{",
                 "vigil_forecast_last_fit_timestamp_seconds{", "vigil_forecast_errors_total{"):
        assert name in text, name
    assert 'vigil_forecast{bound="yhat_upper",forecast="leak",instance="a",job="demo"}' in text
    body = await (await client.get("/api/v1/forecasts", params={"band": "1"})).json()
    leak = body["data"][0]
    assert leak["name"] == "leak" and leak["series"][0]["status"] == "ok"
    assert len(leak["series"][0]["forecast"][0]) == 4  # [t, yhat, lower, upper]
    # Prometheus goes away: the next cycle fails, the last forecast is still served, aged
    proc.stop()
    await asyncio.get_running_loop().run_in_executor(None, engine.run_cycle)
    text = await (await client.get("/metrics")).text()
    assert 'vigil_forecast_errors_total{forecast="leak"} 1.0' in text
    assert 'vigil_forecast{bound="yhat",forecast="leak",instance="a",job="demo"}' in text
    body = await (await client.get("/api/v1/forecasts")).json()
    assert body["data"][0]["age_seconds"] >= 0 and "unreachable" in body["data"][0]["last_error"]


def test_forecast_command_draws_a_png(prometheus: str, tmp_path: Path) -> None:
    out = tmp_path / "leak.png"
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "forecast", "--query", "synthetic_memory_bytes",
         "--prometheus.url", prometheus, "--history", "6h", "--step", "1m", "--horizon", "8h",
         "--threshold", str(_leak()[2]), "--plot", str(out)],
        check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "threshold" in proc.stdout and "ETA" in proc.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


# bcrypt hash of "forecast-secret" (Prometheus' web config stores only the hash)
BCRYPT_HASH = "$2b$04$zruHgZnf7udnpRbNE9lVR.ONVa/wcJvhthTfgp71siJox60Gqhq3C"


def test_basic_auth_against_a_protected_prometheus(start_process: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    from tests.harness import require_binary, wait_for
    from vigil.procs import ManagedProcess, free_port

    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {"vigil": BCRYPT_HASH}}))
    prom = tmp_path / "prometheus.yml"
    prom.write_text("global: {scrape_interval: 15s}\nscrape_configs: []\n")
    port = free_port()
    start_process(ManagedProcess(
        name="prometheus-auth",
        argv=[require_binary("prometheus"), f"--config.file={prom}",
              f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
              f"--web.config.file={web}", "--log.level=warn"],
        log_path=tmp_path / "prometheus.log"))
    url = f"http://127.0.0.1:{port}"
    import requests

    wait_for(lambda: requests.get(f"{url}/-/ready", timeout=1).status_code == 401,
             what="protected Prometheus")
    monkeypatch.setenv("VIGIL_TEST_PROM_PASSWORD", "forecast-secret")
    good = _config(url, x={"query": "up"}).prometheus
    good.auth = good.auth.model_validate({"username": "vigil",
                                          "password_env": "VIGIL_TEST_PROM_PASSWORD"})
    assert PrometheusClient(good).query("vector(42)") == [({}, 42.0)]
    bad = _config(url, x={"query": "up"}).prometheus
    with pytest.raises(PrometheusError, match="401"):
        PrometheusClient(bad).query("vector(42)")


def test_counter_resets_vanishing_series_and_shards(prometheus_factory: Callable[..., Any],
                                                    tmp_path: Path) -> None:
    ts = np.arange(NOW - 4 * 3600, NOW + 1, 60.0)
    cumulative = 10.0 * np.arange(len(ts))  # 10 requests a minute
    restarted = cumulative.copy()
    restarted[len(ts) // 2:] -= restarted[len(ts) // 2]  # the process restarted: counter reset
    series = [("synthetic_requests_total", {"instance": "reset"}, ts, restarted)]
    old = ts < NOW - 2 * 3600
    series.append(("synthetic_requests_total", {"instance": "gone"}, ts[old], cumulative[old]))
    series += [("synthetic_requests_total", {"instance": f"i{k}"}, ts, cumulative + k)
               for k in range(6)]
    _, url = start_with_series(prometheus_factory, tmp_path, series)
    body = {"query": "synthetic_requests_total", "history": "4h", "step": "1m", "horizon": "1h",
            "min_history": "1h", "seasonality": {"daily": False, "weekly": False}}
    engine = Engine(_config(url, reqs=body))
    engine.run_cycle(NOW)
    by_instance = {s["labels"]["instance"]: s for s in engine.snapshot(NOW)[0]["series"]}
    assert "gone" not in by_instance  # vanished two hours ago
    reset = by_instance["reset"]
    # the forecast continues the cumulative count instead of falling back after the reset
    assert reset["yhat"] == pytest.approx(cumulative[-1], rel=0.02)
    # like rate(), the reset sample itself counts from zero: one minute's 10 is not seen
    assert reset["last_value"] == pytest.approx(cumulative[-1] - 10.0)
    # two shards split the series between them, each series exactly once
    seen = []
    for index in range(2):
        shard = Engine(_config(url, reqs=body), shard=(index, 2))
        shard.run_cycle(NOW)
        seen.append({s["labels"]["instance"] for s in shard.snapshot(NOW)[0]["series"]})
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(by_instance)


def test_a_dead_fit_worker_is_replaced(prometheus: str) -> None:
    import os
    import signal

    pools: list[ProcessPoolExecutor] = []

    def new_pool() -> ProcessPoolExecutor:
        pools.append(ProcessPoolExecutor(2, initializer=quiet_prophet))
        return pools[-1]

    config = _config(prometheus, both={
        "query": '{__name__=~"synthetic_memory_bytes|synthetic_limit_bytes"}', "history": "6h",
        "step": "1m", "horizon": "1h", "retrain_interval": "4m",
        "seasonality": {"daily": False, "weekly": False}})
    engine = Engine(config, executor_factory=new_pool)
    try:
        engine.run_cycle(NOW)
        assert [s["status"] for s in engine.snapshot(NOW)[0]["series"]] == ["ok", "ok"]
        for pid in list(pools[0]._processes):
            os.kill(pid, signal.SIGKILL)
        engine.run_cycle(NOW + 240)  # a refit is due
        snap = engine.snapshot(NOW + 240)[0]
        assert len(pools) == 2  # a fresh pool took over
        assert [s["status"] for s in snap["series"]] == ["ok", "ok"]
        # refitted in this cycle (Prometheus repeats the last sample for 5 minutes of lookback)
        assert all(s["fitted_at"] == NOW + 240 for s in snap["series"])
        assert snap["last_fit_timestamp"] == NOW + 240
    finally:
        for pool in pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _deployed_anomaly_settings(name: str) -> dict[str, Any]:
    """The anomaly settings deploy/forecasts.yml gives forecast `name` (the demo runs them)."""
    import yaml

    doc = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "forecasts.yml")
                         .read_text())
    forecast = next(f for f in doc["forecasts"] if f["name"] == name)
    return {k: v for k, v in forecast.items() if k.startswith(("anomaly_", "calibration_"))}


def _memory_like(seed: int, leak_at: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A process's resident memory at 1 s: warm-up, AR(1) noise, 128 KiB pages; maybe a leak."""
    ts = np.arange(NOW - 420, NOW + 1, 1.0)
    rng = np.random.default_rng(seed)
    noise = np.zeros(len(ts))
    for i in range(1, len(ts)):
        noise[i] = 0.8 * noise[i - 1] + rng.normal(0, 60e3)
    values = 65e6 + 4e6 * (1 - np.exp(-(ts - ts[0]) / 40.0)) + noise
    if leak_at is not None:
        values += np.where(ts >= leak_at, 40e3 * (ts - leak_at), 0.0)  # 40 KB/s
    return ts, np.round(values / 131072) * 131072


def test_overfit_short_history_stays_quiet_and_a_leak_is_flagged(
        prometheus_factory: Callable[..., Any], tmp_path: Path) -> None:
    # The demo's memory forecast compressed 60x: 1 s step, 30 s of history before the first
    # fit, a refit every 15 s. Prophet's changepoints fit such a short history so closely
    # that the in-sample band is a fraction of the real error; the old band flagged the
    # ordinary noise of the next seconds as an anomaly within three points.
    leak_at = NOW - 120
    quiet_ts, quiet_vs = _memory_like(5)
    leak_ts, leak_vs = _memory_like(5, leak_at)
    _, url = start_with_series(prometheus_factory, tmp_path, [
        ("synthetic_rss_bytes", {"instance": "quiet"}, quiet_ts, quiet_vs),
        ("synthetic_rss_bytes", {"instance": "leak"}, leak_ts, leak_vs)])
    config = _config(url, memory={
        "query": "synthetic_rss_bytes", "history": "2880s", "step": "1s", "horizon": "360s",
        "min_history": "30s", "retrain_interval": "15s",
        "seasonality": {"daily": False, "weekly": False}, **_deployed_anomaly_settings("memory")})
    engine = Engine(config)
    flags: dict[str, list[bool]] = {"quiet": [], "leak": []}
    for t in np.arange(quiet_ts[0] + 30, NOW + 1, 2.0):
        engine.run_cycle(float(t))
        for series in engine.snapshot(float(t))[0]["series"]:
            flags[series["labels"]["instance"]].append(bool(series.get("anomaly")))
    quiet = flags["quiet"]
    longest = max((len(run) for run in "".join("x" if f else " " for f in quiet).split()),
                  default=0)
    # cycles are 2 s apart: ForecastAnomalySustained (15 s compressed) needs 8 in a row
    assert longest < 8 and sum(quiet) <= 0.05 * len(quiet), quiet
    before = (NOW - 120 - (quiet_ts[0] + 30)) // 2
    assert any(flags["leak"][int(before):]), "the leak was never flagged"
