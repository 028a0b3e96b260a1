"""The forecaster config: bundled file valid, bad input names the key path, secrets not echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from vigil.forecaster.config import load_config, parse_duration

from vigil.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "deploy" / "forecasts.yml"


def test_bundled_forecasts_cover_the_demo_target() -> None:
    config = load_config(BUNDLED)
    names = {f.name for f in config.forecasts}
    assert names == {"memory", "disk", "latency", "requests", "error_budget_remaining"}
    assert all(f.threshold is not None for f in config.forecasts)
    budget = next(f for f in config.forecasts if f.name == "error_budget_remaining")
    assert budget.threshold is not None and budget.threshold.direction == "below"
    # capacity forecasts flag growth only; the others keep the default, both sides
    directions = {f.name: f.anomaly_direction for f in config.forecasts}
    assert directions == {"memory": "above", "disk": "above", "latency": "both",
                          "requests": "both", "error_budget_remaining": "both"}
    requests = next(f for f in config.forecasts if f.name == "requests")
    assert requests.horizon >= 7 * 86400  # capacity planning looks further ahead


def test_check_config_accepts_the_bundled_file() -> None:
    proc = subprocess.run([sys.executable, "-m", "vigil.cli", "check-config", str(BUNDLED)],
                          check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "valid forecaster configuration" in proc.stdout


@pytest.mark.parametrize(("body", "path", "message"), [
    ("forecasts: []", "forecasts", "at least 1"),
    ("forecasts:\n  - {name: m, query: up, step: 5x}", "forecasts[0].step", "duration"),
    ("forecasts:\n  - {name: m, query: up, horizon: 1s}", "forecasts[0]", "horizon"),
    ("forecasts:\n  - {name: m, query: up, threshold: {direction: above}}",
     "forecasts[0].threshold", "value or a query"),
    ("forecasts:\n  - {name: m, query: up, treshold: {value: 1}}", "forecasts[0].treshold",
     "Extra inputs"),
    ("forecasts:\n  - {name: m, query: up}\n  - {name: m, query: up}", "", "duplicate"),
    ("prometheus: {url: ftp://x}\nforecasts:\n  - {name: m, query: up}", "prometheus", "http"),
    ("forecasts:\n  - {name: m, query: up, anomaly_direction: up}",
     "forecasts[0].anomaly_direction", "'both', 'above' or 'below'"),
    ("forecasts:\n  - {name: m, query: up, calibration_window: 10, calibration_min_points: 20}",
     "forecasts[0]", "calibration_min_points must not exceed calibration_window"),
])
def test_bad_config_names_the_key_path(tmp_path: Path, body: str, path: str, message: str) -> None:
    file = tmp_path / "forecasts.yml"
    file.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert err.value.path == path
    assert message in err.value.message
    assert str(file) in str(err.value)


def test_config_error_never_echoes_a_secret(tmp_path: Path) -> None:
    file = tmp_path / "forecasts.yml"
    file.write_text("prometheus:\n  auth: {username: u, password: hunter2-secret}\n"
                    "forecasts:\n  - {name: m, query: up}\n")
    with pytest.raises(ConfigError) as err:
        load_config(file)
    assert "hunter2-secret" not in str(err.value)
    assert err.value.path == "prometheus.auth.password"


def test_durations() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("14d") == 14 * 86400
    assert parse_duration(90) == 90
    for bad in ("", "5", "h", "-5m", "5m3", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
