"""The bundled forecasts (deploy/forecasts.yml) against the real demo target scraped by Prometheus."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from vigil.forecaster.config import load_config
from vigil.forecaster.engine import Engine

from tests.harness import prom_value, wait_for
from vigil.paths import RULES_DIR
from vigil.procs import prometheus_config

pytestmark = pytest.mark.integration

BUNDLED = Path(__file__).resolve().parents[2] / "deploy" / "forecasts.yml"


def test_bundled_disk_and_memory_forecasts_on_the_demo_target(demo_target: Any,
                                                               prometheus_factory: Any) -> None:
    # the forecasts read the generic signals, which rules/signals.rules.yml records
    _, url = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]},
                                                  rule_files=[RULES_DIR / "signals.rules.yml"]))
    growth = 2 * 1024 * 1024  # 2 MiB/s against a 256 MiB volume
    demo_target.inject(disk_growth_bytes_per_second=growth)
    wait_for(lambda: (prom_value(url, 'count_over_time(demo_disk_usage_bytes{job="demo"}[1m])')
                      or 0) >= 20, timeout=60, what="20 s of disk samples in Prometheus")
    config = load_config(BUNDLED)
    config.prometheus.url = url
    config.forecasts = [f for f in config.forecasts if f.name in ("disk", "memory")]
    for forecast in config.forecasts:  # same queries and thresholds, compressed in time
        forecast.history, forecast.step, forecast.min_history = 60.0, 1.0, 10.0
        forecast.horizon = 900.0
        forecast.seasonality.daily = forecast.seasonality.weekly = False
    engine = Engine(config)
    now = time.time()
    engine.run_cycle(now)
    snap = {f["name"]: f for f in engine.snapshot(now)}
    disk = snap["disk"]["series"]
    assert len(disk) == 1 and disk[0]["status"] == "ok", snap["disk"]
    assert disk[0]["labels"]["job"] == "demo"
    capacity = prom_value(url, 'demo_disk_capacity_bytes{job="demo"}')
    assert disk[0]["threshold"] == capacity  # read through the threshold query
    remaining = (capacity - disk[0]["last_value"]) / growth
    eta = disk[0]["threshold_eta_seconds"]
    assert math.isfinite(eta) and 0.5 * remaining <= eta <= 1.2 * remaining, (eta, remaining)
    memory = snap["memory"]["series"]
    assert len(memory) == 1 and memory[0]["status"] == "ok"
    assert memory[0]["threshold"] == prom_value(url, 'demo_memory_limit_bytes{job="demo"}')
    assert memory[0]["yhat"] > 0
