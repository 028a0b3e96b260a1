"""Time compression of rule files: pure logic, plus promtool accepting every compressed file."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.harness import require_binary
from vigil.paths import RULES_DIR
from vigil.timescale import format_duration, parse_duration, scale_expr, scale_rule_file


def test_durations_round_trip() -> None:
    assert parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5
    assert format_duration(30) == "30s"
    assert format_duration(0.25) == "250ms"
    with pytest.raises(ValueError):
        parse_duration("5 minutes")


def test_ranges_offsets_subqueries_scale() -> None:
    assert scale_expr("rate(x[5m])", 60) == "rate(x[5s])"
    assert scale_expr("rate(x[1m])", 60) == "rate(x[4s])"  # kept at min_range
    assert scale_expr("avg_over_time(x[1h:5m])", 60) == "avg_over_time(x[60s:5s])"
    assert scale_expr("x offset 1w", 60) == "x offset 10080s"


def test_label_values_are_never_rewritten() -> None:
    expr = 'rate(x{route=~"/a/[5m]", b=\'[1h]\'}[10m])'
    assert scale_expr(expr, 60) == 'rate(x{route=~"/a/[5m]", b=\'[1h]\'}[10s])'


def test_predict_linear_horizon_scales() -> None:
    expr = "predict_linear(process_resident_memory_bytes[30m], 4 * 3600) > on (job) demo_memory_limit_bytes"
    assert scale_expr(expr, 60) == ("predict_linear(process_resident_memory_bytes[30s], (4 * 3600) / 60)"
                                    " > on (job) demo_memory_limit_bytes")


def test_compressed_clock_comparisons_scale_real_world_ones_do_not() -> None:
    eta = 'vigil_forecast_threshold_eta_seconds{forecast!="error_budget_remaining"} < 6 * 3600'
    assert scale_expr(eta, 60) == ('vigil_forecast_threshold_eta_seconds{forecast!="error_budget_remaining"}'
                                   " < (6 * 3600) / 60")
    age = "time() - vigil_forecast_last_fit_timestamp_seconds > 3600"
    assert scale_expr(age, 60) == "time() - vigil_forecast_last_fit_timestamp_seconds > (3600) / 60"
    tls = "vigil_tls_cert_remaining_seconds < 14 * 86400"
    assert scale_expr(tls, 60) == tls


def test_factor_one_is_identity() -> None:
    assert scale_expr("rate(x[5m]) offset 1h", 1) == "rate(x[5m]) offset 1h"


def test_every_shipped_rule_file_still_checks_after_compression(tmp_path: Path) -> None:
    promtool = require_binary("promtool")
    files = sorted(RULES_DIR.glob("*.rules.yml"))
    assert files, f"no rule files in {RULES_DIR}"
    out = [scale_rule_file(f, tmp_path / f.name, 60) for f in files]
    result = subprocess.run([promtool, "check", "rules", *map(str, out)], capture_output=True,
                            text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_timers_scale_and_amtool_accepts(tmp_path: Path) -> None:
    import yaml

    from vigil.paths import DEPLOY_DIR
    from vigil.timescale import scale_alertmanager_config

    doc = {"global": {"resolve_timeout": "5m"},
           "route": {"receiver": "r", "group_wait": "30s", "group_interval": "5m",
                     "repeat_interval": "12h",
                     "routes": [{"receiver": "r", "group_wait": "0s", "group_interval": "30s"}]},
           "receivers": [{"name": "r"}]}
    out = scale_alertmanager_config(doc, 60)
    assert out["route"]["group_wait"] == "500ms"
    assert out["route"]["group_interval"] == "5s"
    assert out["route"]["repeat_interval"] == "720s"
    assert out["route"]["routes"][0]["group_wait"] == "0s"
    assert out["route"]["routes"][0]["group_interval"] == "1s"  # kept at 1 s
    assert out["global"]["resolve_timeout"] == "5s"
    amtool = require_binary("amtool")
    shipped = yaml.safe_load((DEPLOY_DIR / "alertmanager.yml").read_text())
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(scale_alertmanager_config(shipped, 60)))
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
