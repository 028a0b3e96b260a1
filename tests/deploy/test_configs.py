"""Shipped configs pass the real checkers: promtool, amtool and `vigil check-config`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY_DIR, RENDER_SCRIPT, render_configs, require_shipped_configs
from tests.harness import require_binary

SECRET_NAMES = ("remediator-token", "remediator-admin-token", "remediator-database-url",
                "demo-admin-token", "demo-api-key")


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def _secrets(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in SECRET_NAMES:
        (secrets / name).write_text("x" * 40)
    return secrets


def test_promtool_check_config_passes_with_the_rules() -> None:
    promtool = require_binary("promtool")
    result = _run([promtool, "check", "config", "prometheus.yml"], cwd=DEPLOY_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    # the rule files are found through the relative glob and checked too
    assert "rule files found" in result.stdout and "FAILED" not in result.stdout


def test_prometheus_scrapes_every_job_of_the_contract() -> None:
    import yaml

    config = yaml.safe_load((DEPLOY_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["static_configs"][0]["targets"]
            for job in config["scrape_configs"]}
    assert jobs["demo"] == ["127.0.0.1:8080"]
    assert jobs["vigil-exporter"] == ["127.0.0.1:9115"]
    assert jobs["vigil-forecaster"] == ["127.0.0.1:9116"]
    assert jobs["vigil-remediator"] == ["127.0.0.1:9095"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "127.0.0.1:9093"]


def test_promtool_rejects_a_broken_copy(tmp_path: Path) -> None:
    # the check above can fail: a scrape job without a name is refused
    promtool = require_binary("promtool")
    bad = tmp_path / "prometheus.yml"
    bad.write_text("scrape_configs:\n  - static_configs: [{targets: ['127.0.0.1:1']}]\n")
    assert _run([promtool, "check", "config", str(bad)]).returncode != 0


def test_amtool_check_config_passes_on_shipped_and_rendered_alertmanager(tmp_path: Path) -> None:
    require_shipped_configs()
    amtool = require_binary("amtool")
    shipped = _run([amtool, "check-config", str(DEPLOY_DIR / "alertmanager.yml")])
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    rendered = tmp_path / "rendered"
    result = render_configs(rendered, secrets_dir=str(_secrets(tmp_path)))
    assert result.returncode == 0, result.stderr
    checked = _run([amtool, "check-config", str(rendered / "alertmanager.yml")])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert str(tmp_path / "secrets" / "remediator-token") in (
        rendered / "alertmanager.yml").read_text()


def test_rendered_vigil_configs_pass_vigil_check_config(tmp_path: Path) -> None:
    require_shipped_configs()
    rendered = tmp_path / "rendered"
    result = render_configs(rendered, secrets_dir=str(_secrets(tmp_path)),
                            extra_env={"VIGIL_STATE_ROOT": str(tmp_path / "state")})
    assert result.returncode == 0, result.stderr
    vigil = shutil.which("vigil", path=str(Path(__file__).resolve().parents[2] / ".venv/bin"))
    assert vigil is not None
    files = [str(rendered / n) for n in ("exporter.yml", "forecasts.yml", "remediator.yml")]
    checked = _run([vigil, "check-config", *files])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    remediator = (rendered / "remediator.yml").read_text()
    assert f"database_url_file: {tmp_path / 'secrets'}/remediator-database-url" in remediator
    assert f"procedures: {DEPLOY_DIR}/procedures.yml" in remediator
    exporter = (rendered / "exporter.yml").read_text()
    assert f"{DEPLOY_DIR}/../demo/db.py" in exporter


def test_render_refuses_an_unknown_placeholder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("exporter.yml", "forecasts.yml", "remediator.yml", "alertmanager.yml"):
        (src / name).write_text("key: value\n")
    (src / "exporter.yml").write_text("file: ${VIGIL_SOMETHING_NEW}/x\n")
    result = render_configs(tmp_path / "out", src=src)
    assert result.returncode != 0
    assert "VIGIL_SOMETHING_NEW" in result.stdout + result.stderr
    assert not list((tmp_path / "out").glob("*.yml")), "nothing partial is written"


def test_render_needs_the_secrets_dir(tmp_path: Path) -> None:
    result = subprocess.run(["sh", str(RENDER_SCRIPT), str(DEPLOY_DIR), str(tmp_path / "o")],
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode != 0 and "VIGIL_SECRETS_DIR" in result.stderr


@pytest.mark.parametrize("name", ["prometheus.yml"])
def test_no_secret_in_prometheus_config(name: str) -> None:
    text = (DEPLOY_DIR / name).read_text()
    assert "password" not in text.lower() and "token" not in text.lower()
