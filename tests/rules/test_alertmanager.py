"""deploy/alertmanager.yml: amtool accepts it, and its routing tree sends each kind of alert
where docs/rules.md says."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tests.harness import require_binary
from vigil.paths import DEPLOY_DIR

CONFIG = DEPLOY_DIR / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_amtool_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(("labels", "receivers"), [
    # remediable warning: only the remediator (it escalates by itself when it fails)
    ({"alertname": "TargetConfigDrift", "severity": "warning", "remediation": "auto"},
     "vigil-remediator"),
    # remediable page: the remediator and a human
    ({"alertname": "TargetDbPoolExhausted", "severity": "critical", "remediation": "auto"},
     "vigil-remediator,human-pager"),
    ({"alertname": "ErrorBudgetBurnFast", "severity": "critical"}, "human-pager"),
    ({"alertname": "SchemaDrift", "severity": "warning"}, "human-tickets"),
    ({"alertname": "TargetTrafficAnomaly", "severity": "info"}, "human-tickets"),
])
def test_routing(labels: dict[str, str], receivers: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}",
                    *(f"{k}={v}" for k, v in labels.items()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receivers


def test_remediator_receiver_contract() -> None:
    """Bearer token from a file, resolved notifications, one alert per notification."""
    config = yaml.safe_load(CONFIG.read_text())
    receiver = next(r for r in config["receivers"] if r["name"] == "vigil-remediator")
    hook = receiver["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:9095/api/v1/alerts"
    assert hook["send_resolved"] is True
    auth = hook["http_config"]["authorization"]
    assert auth["credentials_file"].endswith("/remediator-token")
    assert "credentials" not in auth
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "vigil-remediator")
    assert route["group_by"] == ["..."]
    assert route["continue"] is True


def test_inhibition_keeps_remediable_and_self_alerts() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    (rule,) = config["inhibit_rules"]
    assert 'severity="critical"' in rule["source_matchers"]
    assert 'remediation!="auto"' in rule["target_matchers"]
    assert rule["equal"] == ["target"]
