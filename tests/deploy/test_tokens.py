"""The remediator's webhook token (what Alertmanager holds) never opens the admin API or the
incident console: every shipped config points the two at different secret files, and on the
config `vigil demo` generates the webhook token is refused by the admin API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.deploy.helpers import DEPLOY_DIR

REMEDIATOR_CONFIGS = ("remediator.yml", "reference/remediator.yml",
                      "kubernetes/base/config/remediator.yml")


def _load(relative: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY_DIR / relative).read_text())
    assert isinstance(data, dict), relative
    return data


@pytest.mark.parametrize("relative", REMEDIATOR_CONFIGS)
def test_shipped_configs_never_share_the_webhook_token_with_admin(relative: str) -> None:
    config = _load(relative)
    webhook = config["webhook"]["bearer_token_file"]
    admin = config["admin"]["bearer_token_file"]
    assert Path(webhook).name == "remediator-token", relative
    assert Path(admin).name == "remediator-admin-token", relative
    assert webhook != admin, f"deploy/{relative}: webhook and admin read the same token file"


def test_alertmanager_sends_the_webhook_token_not_the_admin_one() -> None:
    am = _load("alertmanager.yml")
    files = [hook["http_config"]["authorization"]["credentials_file"]
             for receiver in am["receivers"] for hook in receiver.get("webhook_configs", [])
             if "authorization" in hook.get("http_config", {})]
    assert files and all(Path(f).name == "remediator-token" for f in files), files
    k8s = yaml.safe_load((DEPLOY_DIR / "kubernetes/base/alertmanagerconfig.yaml").read_text())
    keys = [hook["httpConfig"]["authorization"]["credentials"]["key"]
            for receiver in k8s["spec"]["receivers"] for hook in receiver.get("webhookConfigs", [])]
    assert keys == ["remediator-token"], keys


def test_only_the_remediator_mounts_the_admin_token() -> None:
    compose = _load("docker-compose.yml")
    holders = sorted(name for name, service in compose["services"].items()
                     if "remediator-admin-token" in service.get("secrets", []))
    assert holders == ["remediator"]
    template = yaml.safe_load((DEPLOY_DIR / "kubernetes/base/secret-template.yaml").read_text())
    assert {"remediator-token", "remediator-admin-token"} <= set(template["stringData"])
    pods = [doc for doc in yaml.safe_load_all(
        (DEPLOY_DIR / "kubernetes/base/remediator.yaml").read_text())
        if doc and doc.get("kind") == "Deployment"]
    volumes = pods[0]["spec"]["template"]["spec"]["volumes"]
    items = next(v["secret"]["items"] for v in volumes if "secret" in v)
    assert {"key": "remediator-admin-token", "path": "remediator-admin-token"} in items


def test_demo_stack_config_refuses_the_webhook_token_on_the_admin_api(
        tmp_path: Path, start_process: Any) -> None:
    from vigil.demo.stack import (
        DEFAULT_PORTS,
        SERVICES,
        Stack,
        _with_demo_waits,
        write_remediator_tokens,
    )

    from vigil.procs import ManagedProcess, free_port

    stack = Stack(tmp_path / "demo")
    stack.ports = {name: free_port() for name in DEFAULT_PORTS}
    secrets_dir = stack.workdir / "secrets"
    secrets_dir.mkdir(parents=True)
    (stack.workdir / "state").mkdir()
    (secrets_dir / "demo-admin-token").write_text("unused-demo-admin-token-0123456789")
    write_remediator_tokens(secrets_dir)
    webhook = (secrets_dir / "remediator-token").read_text()
    admin = (secrets_dir / "remediator-admin-token").read_text()
    assert webhook and admin and webhook != admin
    assert (secrets_dir / "remediator-admin-token").stat().st_mode & 0o777 == 0o600
    spec = next(s for s in SERVICES if s.job == "vigil-remediator")
    config = stack.generated(spec.config, _with_demo_waits)
    port = stack.ports["vigil-remediator"]
    start_process(ManagedProcess(
        name="vigil-remediator",
        argv=[sys.executable, "-c", f"from {spec.module} import main; main()",
              f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}"],
        log_path=stack.workdir / "logs" / "vigil-remediator.log",
        ready_url=f"http://127.0.0.1:{port}/-/healthy"), 60)
    url = f"http://127.0.0.1:{port}/api/v1/incidents"
    refused = requests.get(url, headers={"Authorization": f"Bearer {webhook}"}, timeout=10)
    assert refused.status_code == 401, refused.text
    allowed = requests.get(url, headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert allowed.status_code == 200, allowed.text
