"""`vigil rules generate`: the committed rules are its output for the bundled spec, every
preset renders rules promtool accepts and tests that pass, and bad input is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import require_binary
from vigil.paths import DEPLOY_DIR, RULES_DIR
from vigil.rulegen import RuleGenError, promtool_check, render, stale
from vigil.spec import load_presets, parse_spec

ALL_PRESETS: dict[str, Any] = {"services": {
    "fastapi": {"http": {"preset": "prometheus-fastapi-instrumentator"}, "slo": {"objective": 0.995},
                "resources": {"memory": {"preset": "process", "signals": {"memory_limit": "vector(1e9)"}},
                              "restarts": {"preset": "process"}},
                "depends_on": ["db"]},
    "starlette": {"http": {"preset": "starlette_exporter"}, "selector": '{env="prod"}'},
    "flask": {"http": {"preset": "prometheus-flask-exporter"}},
    "django": {"http": {"preset": "django-prometheus"}},
    "otel": {"http": {"preset": "opentelemetry"}},
    "go": {"http": {"preset": "promhttp"}},
    "demo": {"http": {"preset": "demo"}, "resources": {"memory": {"preset": "demo"}, "disk": {"preset": "demo"},
                                                    "connections": {"preset": "demo"}}},
    "host": {"resources": {"memory": {"preset": "node_exporter", "job": "node"},
                           "disk": {"preset": "node_exporter", "job": "node",
                                    "selector": '{mountpoint="/srv/data"}'}}},
    "pod": {"resources": {"memory": {"preset": "cadvisor", "job": None,
                                     "selector": '{namespace="shop", pod="shop-0"}'},
                          "restarts": {"preset": "cadvisor", "job": None, "selector": '{namespace="shop"}'}}},
    "db": {"resources": {"connections": {"preset": "postgres_exporter", "job": "postgres"}}},
    "site": {"resources": {"probes": {"preset": "blackbox_exporter", "job": "blackbox"}}},
}}


def vigil(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vigil.cli", *args], capture_output=True, text=True,
                          timeout=300, check=False, cwd=cwd)


def test_committed_rules_equal_the_output_for_the_bundled_spec() -> None:
    require_binary("promtool")
    files = render(parse_spec(yaml.safe_load((DEPLOY_DIR / "services.yml").read_text())))
    assert stale(files, RULES_DIR) == [], "run `vigil rules generate` and commit rules/"
    result = vigil("rules", "generate", "--check")
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file(tmp_path: Path) -> None:
    out = tmp_path / "rules"
    assert vigil("rules", "generate", "--out", str(out)).returncode == 0
    (out / "slo.rules.yml").write_text((out / "slo.rules.yml").read_text().replace("0.999", "0.99"))
    result = vigil("rules", "generate", "--check", "--out", str(out))
    assert result.returncode == 1
    assert "slo.rules.yml" in result.stderr
    assert "STALE" in result.stderr


def test_rendering_is_deterministic() -> None:
    spec = parse_spec(ALL_PRESETS)
    assert render(spec) == render(parse_spec(ALL_PRESETS))


def test_every_bundled_preset_renders_and_its_generated_tests_pass() -> None:
    require_binary("promtool")
    files = render(parse_spec(ALL_PRESETS))
    promtool_check(files)  # check rules, then the generated promtool tests
    tests = yaml.safe_load(files["tests/signals.test.yml"])["tests"]
    exprs = {t["expr"].split("{")[0] for group in tests for t in group["promql_expr_test"]}
    recorded = {r["record"] for g in yaml.safe_load(files["signals.rules.yml"])["groups"]
                for r in g["rules"]}
    # every recorded signal but the custom memory_limit has a generated test from real shapes
    assert recorded <= exprs | {"target:memory_limit:bytes"}
    presets = load_presets()
    used = {s["http"]["preset"] for s in ALL_PRESETS["services"].values() if "http" in s}
    assert used == set(presets.http), "every bundled HTTP preset is exercised"
    used = {src["preset"] for s in ALL_PRESETS["services"].values()
            for src in s.get("resources", {}).values()}
    assert used == set(presets.resources), "every bundled resource preset is exercised"


def test_generated_tests_catch_a_wrong_rule() -> None:
    require_binary("promtool")
    files = render(parse_spec(ALL_PRESETS))
    text = files["signals.rules.yml"]
    assert "- max by (job, instance) (pg_settings_superuser_reserved_connections" in text
    files["signals.rules.yml"] = text.replace("- max by (job, instance) (pg_settings_superuser",
                                              "+ max by (job, instance) (pg_settings_superuser")
    with pytest.raises(RuleGenError, match="fails the generated tests"):
        promtool_check(files)


def test_slo_objective_and_vigil_jobs_come_from_the_spec() -> None:
    spec = parse_spec({**ALL_PRESETS, "vigil": {"exporter": "ex", "forecaster": "fc", "remediator": "rm"}})
    files = render(spec)
    slo = yaml.safe_load(files["slo.rules.yml"])["groups"][0]["rules"]
    objectives = {r["labels"]["job"]: r["expr"] for r in slo if r["record" if "record" in r else "alert"]
                  == "vigil:slo_objective:ratio"}
    assert objectives["fastapi"] == "vector(0.995)"
    assert objectives["flask"] == "vector(0.999)"
    assert 'up{job="ex"}' in files["vigil.rules.yml"]
    assert 'up{job="rm"}' in files["vigil.rules.yml"]
    assert "vigil-exporter\"" not in files["vigil.rules.yml"]


def _spec_file(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "services.yml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("service", "where", "needle"), [
    ({"http": {"preset": "flsk"}}, "services.shop.http.preset", "unknown HTTP preset 'flsk'"),
    ({"selector": '{env="prod"'}, "services.shop.selector", "braces"),
    ({"selector": '{env=prod}'}, "services.shop.selector", "not valid PromQL"),
    ({"resources": {"disk": {"preset": "node_exporter", "selector": '{mountpoint=~"("}'}}},
     "services.shop.resources.disk.selector", "not valid PromQL"),
    ({"resources": {"probes": {"preset": "postgres_exporter"}}},
     "services.shop.resources.probes.preset", "has no probe_success signal"),
    ({"resources": {"disk": {"preset": "node_exporter", "signals": {"tls_expiry": "x{<sel>}"}}}},
     "services.shop.resources.disk.signals.tls_expiry", "not a disk signal"),
    ({"resources": {"memory": {"preset": "nodexp"}}}, "services.shop.resources.memory.preset",
     "unknown resource preset"),
    ({"depends_on": ["nowhere"]}, "services.shop.depends_on[0]", "unknown service"),
    ({"htp": {"preset": "demo"}}, "services.shop.htp", "Extra inputs"),
])
def test_bad_spec_is_one_line_naming_the_key(tmp_path: Path, service: dict[str, Any], where: str,
                                            needle: str) -> None:
    spec = _spec_file(tmp_path, {"services": {"shop": service}})
    out = tmp_path / "out"
    for args in (["rules", "generate", "--spec", str(spec), "--out", str(out)],
                 ["check-config", str(spec)]):
        result = vigil(*args)
        assert result.returncode == 1, result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert f"{spec}: {where}: " in lines[0]
        assert needle in lines[0]
        assert "Traceback" not in result.stderr
    assert not out.exists(), "nothing is written for a bad spec"


def test_a_rule_promtool_rejects_fails_and_writes_nothing(tmp_path: Path) -> None:
    require_binary("promtool")
    # promql-parser accepts histogram_avg; the Prometheus here (2.42) does not know it
    spec = _spec_file(tmp_path, {"services": {"shop": {"resources": {"memory": {
        "signals": {"memory_used": "histogram_avg(app_memory{<sel>})"}}}}}})
    out = tmp_path / "out"
    result = vigil("rules", "generate", "--spec", str(spec), "--out", str(out))
    assert result.returncode == 1
    assert "promtool rejects the generated rules" in result.stderr
    assert "histogram_avg" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_check_config_accepts_the_bundled_spec() -> None:
    result = vigil("check-config", str(DEPLOY_DIR / "services.yml"))
    assert result.returncode == 0, result.stderr
    assert "valid services configuration" in result.stdout


def test_every_alert_the_generator_emits_has_a_runbook_section() -> None:
    from tests.rules.rulefiles import runbook_anchors

    files = render(parse_spec(ALL_PRESETS))
    anchors = runbook_anchors()
    alerts = {r["alert"] for name, text in files.items() if name.endswith(".rules.yml")
              for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r}
    assert {"TargetProbeFailing", "TargetOomKilled", "TargetDatabaseDown"} <= alerts
    missing = sorted(a for a in alerts if f"alert-name-{a.lower()}" not in anchors)
    assert missing == []


# Raw names that a preset maps to a generic signal; downstream configs read the signal.
RAW_SIGNAL_NAMES = {"process_resident_memory_bytes", "demo_memory_limit_bytes", "demo_disk_usage_bytes",
                    "demo_disk_capacity_bytes", "demo_db_pool_connections_in_use", "demo_db_pool_size",
                    "http_requests_total", "http_request_duration_seconds_bucket"}


def _queries(value: Any, keys: tuple[str, ...]) -> list[str]:
    if isinstance(value, dict):
        return [q for k, v in value.items()
                for q in ([v] if k in keys and isinstance(v, str) else _queries(v, keys))]
    if isinstance(value, list):
        return [q for v in value for q in _queries(v, keys)]
    return []


def test_forecasts_procedures_and_dashboards_read_the_generic_signals() -> None:
    import json
    import re

    from tests.rules.rulefiles import selected_metrics
    from vigil.paths import GRAFANA_DIR

    queries = _queries(yaml.safe_load((DEPLOY_DIR / "forecasts.yml").read_text()), ("query",))
    queries += _queries(yaml.safe_load((DEPLOY_DIR / "procedures.yml").read_text()), ("query",))
    for board in sorted((GRAFANA_DIR / "dashboards").glob("*.json")):
        queries += _queries(json.loads(board.read_text()), ("expr",))
    assert len(queries) > 20
    offenders = []
    for query in queries:
        # Grafana and procedure placeholders are not PromQL; give them a value that parses
        text = re.sub(r"\$\{?[a-z_]+\}?", "1m", query)
        try:
            names = selected_metrics(text)
        except ValueError:
            continue
        offenders += [f"{query}: {name}" for name in sorted(names & RAW_SIGNAL_NAMES)]
    assert offenders == []


def test_alert_overrides_change_only_the_named_alerts(tmp_path: Path) -> None:
    site = {"resources": {"probes": {"preset": "blackbox_exporter", "job": "blackbox"}}}
    plain = render(parse_spec({"services": {"site": site}}))
    tuned = render(parse_spec({"services": {"site": site}, "alerts": {
        "TargetProbeFailing": {"for": "5m", "labels": {"remediation": "auto"}},
        "ForecastAnomalySustained": {"labels": {"team": "web"}}}}))

    def alerts(files: dict[str, str]) -> dict[str, Any]:
        return {r["alert"]: r for name, text in files.items() if name.endswith(".rules.yml")
                for g in yaml.safe_load(text)["groups"] for r in g["rules"] if "alert" in r}

    before, after = alerts(plain), alerts(tuned)
    assert after["TargetProbeFailing"]["for"] == "5m" and before["TargetProbeFailing"]["for"] == "2m"
    assert after["TargetProbeFailing"]["labels"] == {"severity": "critical", "remediation": "auto"}
    assert "for 2 minutes" in before["TargetProbeFailing"]["annotations"]["description"]
    assert "for 5 minutes" in after["TargetProbeFailing"]["annotations"]["description"]
    assert after["ForecastAnomalySustained"]["labels"]["team"] == "web"
    # the override does not leak into a later rendering (some alerts are shared constants)
    assert alerts(render(parse_spec({"services": {"site": site}}))) == before
    assert {k: v for k, v in after.items() if k not in ("TargetProbeFailing", "ForecastAnomalySustained")} \
        == {k: v for k, v in before.items() if k not in ("TargetProbeFailing", "ForecastAnomalySustained")}


@pytest.mark.parametrize("alerts, where, needle", [
    ({"TargetProbeFailng": {"for": "5m"}}, "alerts.TargetProbeFailng", "no generated alert has this name"),
    ({"TargetProbeFailing": {"for": "five minutes"}}, "alerts.TargetProbeFailing.for",
     "not a Prometheus duration"),
    ({"TargetProbeFailing": {"labels": {"alertname": "X"}}}, "alerts.TargetProbeFailing.labels",
     "not a label an alert may set"),
])
def test_bad_alert_override_is_one_line_naming_the_key(tmp_path: Path, alerts: dict[str, Any], where: str,
                                                      needle: str) -> None:
    spec = _spec_file(tmp_path, {"services": {"site": {"resources": {"probes": {
        "preset": "blackbox_exporter", "job": "blackbox"}}}}, "alerts": alerts})
    out = tmp_path / "out"
    result = vigil("rules", "generate", "--spec", str(spec), "--out", str(out))
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{spec}: {where}: " in lines[0] and needle in lines[0], result.stderr
    assert not out.exists()
