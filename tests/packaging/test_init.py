"""`vigil init` writes a starter configuration that Vigil, promtool and amtool accept, asks
nothing, refuses to overwrite, and says what to edit next."""

from __future__ import annotations

import importlib.util
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness import require_binary

VIGIL = [sys.executable, "-m", "vigil.cli"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*VIGIL, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False, stdin=subprocess.DEVNULL)


def test_init_writes_a_configuration_that_passes_every_check(tmp_path: Path) -> None:
    promtool, amtool = require_binary("promtool"), require_binary("amtool")
    out = tmp_path / "shop-vigil"
    done = _run("init", str(out), "--service", "shop", "--url", "http://127.0.0.1:8001",
                "--preset", "prometheus-fastapi-instrumentator", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Edit next:" in done.stdout and "procedures.yml" in done.stdout

    checked = _run("check-config", str(out / "exporter.yml"), str(out / "remediator.yml"),
                   cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("SUCCESS") == 2
    prom = subprocess.run([promtool, "check", "config", str(out / "prometheus.yml")],
                          capture_output=True, text=True, check=False)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    am = subprocess.run([amtool, "check-config", str(out / "alertmanager.yml")],
                        capture_output=True, text=True, check=False)
    assert am.returncode == 0, am.stdout + am.stderr

    services = yaml.safe_load((out / "services.yml").read_text())
    assert services["services"]["shop"]["http"]["preset"] == "prometheus-fastapi-instrumentator"
    if importlib.util.find_spec("vigil.spec") is not None:  # the service spec's own validation
        spec = _run("check-config", str(out / "services.yml"), cwd=tmp_path)
        assert spec.returncode == 0, spec.stdout + spec.stderr

    # strict patterns: only the service's own instance, only its alerts
    (proc,) = yaml.safe_load((out / "procedures.yml").read_text())["procedures"]
    assert proc["params"]["instance"]["pattern"] == r"127\.0\.0\.1:8001"
    assert 'job="shop"' in proc["match"] and proc["requires_approval"] is True
    scrape = yaml.safe_load((out / "prometheus.yml").read_text())["scrape_configs"]
    assert scrape[0]["static_configs"][0]["targets"] == ["127.0.0.1:8001"]

    tokens = {p.name: p for p in (out / "secrets").iterdir()}
    assert set(tokens) == {"webhook-token", "admin-token"}
    assert tokens["webhook-token"].read_text() != tokens["admin-token"].read_text()
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in tokens.values())
    for secret in (p.read_text().strip() for p in tokens.values()):
        assert secret not in done.stdout


def test_init_refuses_to_overwrite_and_names_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    out.mkdir()
    (out / "remediator.yml").write_text("mine\n")
    refused = _run("init", str(out), cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip().count("\n") == 0 and "remediator.yml" in refused.stderr
    assert (out / "remediator.yml").read_text() == "mine\n"
    assert sorted(p.name for p in out.iterdir()) == ["remediator.yml"]

    bad = _run("init", str(tmp_path / "other"), "--url", "shop.example", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("vigil init: error: --url:")
    assert "Traceback" not in bad.stderr and not (tmp_path / "other").exists()
