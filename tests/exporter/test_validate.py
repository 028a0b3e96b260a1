"""`vigil validate` as a deploy gate: exit codes, --fail-on, and the machine formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from vigil.demo.client import DemoTarget

from tests.exporter.helpers import demo_config_dict
from tests.exporter.servers import Servers
from vigil.procs import free_port


def vigil(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_exit_codes_and_formats(demo_target: DemoTarget, tmp_path: Path) -> None:
    data = demo_config_dict(demo_target, tmp_path)
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump(data))

    clean = vigil("validate", f"--config.file={config}", cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "target demo: score 100.0/100" in clean.stdout
    assert "passed" in clean.stderr

    demo_target.inject(cors_drift=True)
    gate = vigil("validate", f"--config.file={config}", cwd=tmp_path)
    assert gate.returncode == 1, gate.stdout + gate.stderr
    assert "method_refused" in gate.stdout and "journey_cors_blocked" in gate.stdout
    assert (
        vigil("validate", f"--config.file={config}", "--fail-on=never", cwd=tmp_path).returncode
        == 0
    )
    only_endpoints = vigil("validate", f"--config.file={config}", "--check=endpoints", cwd=tmp_path)
    assert only_endpoints.returncode == 0 and "cors" not in only_endpoints.stdout

    out = vigil("validate", f"--config.file={config}", "--format=json", cwd=tmp_path)
    assert out.returncode == 1
    doc = json.loads(out.stdout)
    [target] = doc["targets"]
    assert target["target"] == "demo" and target["score"] < 100
    cors = next(c for c in target["checks"] if c["check"] == "cors")
    assert {(f["rule"], f["subject"], f["severity"]) for f in cors["findings"]} == {
        ("method_refused", "https://app.example.com PATCH", "critical"),
        ("method_refused", "https://admin.example.com PATCH", "critical"),
    }
    assert all(f["fix"] for f in cors["findings"])

    junit = tmp_path / "report.xml"
    out = vigil(
        "validate", f"--config.file={config}", "--format=junit", f"--output={junit}", cwd=tmp_path
    )
    assert out.returncode == 1 and "method_refused" in out.stdout  # the table still prints
    root = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    schema_checks = {"schema", "schema_lint", "schema_drift", "code_references"}
    assert set(cases) == {"cors", "env", "security", "endpoints", "journeys", *schema_checks}
    assert cases["cors"].find("failure") is not None
    assert cases["endpoints"].find("failure") is None
    assert root.find("testsuite").get("failures") == "2"  # type: ignore[union-attr]

    out = vigil("validate", f"--config.file={config}", "--format=sarif", cwd=tmp_path)
    sarif = json.loads(out.stdout)
    assert sarif["version"] == "2.1.0"
    run = sarif["runs"][0]
    assert {r["ruleId"] for r in run["results"]} == {
        "cors/method_refused",
        "journeys/journey_cors_blocked",
    }
    assert {r["level"] for r in run["results"]} == {"error"}
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {
        "cors/method_refused",
        "journeys/journey_cors_blocked",
    }


def test_a_check_that_cannot_run_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "down",
                        "base_url": f"http://127.0.0.1:{free_port()}",
                        "cors": {"origins": ["https://a.example.com"]},
                    }
                ]
            }
        )
    )
    out = vigil("validate", f"--config.file={config}", "--format=json", cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    check = json.loads(out.stdout)["targets"][0]["checks"][0]
    assert check["success"] is False and "every CORS probe failed" in check["error"]


def write_cors_config(path: Path, **cors: Any) -> Path:
    """A one-target config for http://x whose cors check has `cors` (origins defaulted)."""
    cors = {"origins": ["https://a.example.com"], **cors}
    target = {"name": "t", "base_url": "http://x", "cors": cors}
    path.write_text(yaml.safe_dump({"targets": [target]}))
    return path


def test_bad_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    config = write_cors_config(tmp_path / "exporter.yml", origins=["https://a.example.com/app"])
    out = vigil("validate", f"--config.file={config}", cwd=tmp_path)
    assert out.returncode == 2
    assert f"{config}: targets[0].cors.origins[0]:" in out.stderr
    check = vigil("check-config", str(config), cwd=tmp_path)
    assert check.returncode == 1 and "targets[0].cors.origins[0]" in check.stderr
    missing = vigil("validate", f"--config.file={tmp_path / 'nope.yml'}", cwd=tmp_path)
    assert missing.returncode == 2 and "file not found" in missing.stderr
    ok = write_cors_config(tmp_path / "ok.yml")
    unknown = vigil("validate", f"--config.file={ok}", "--target=zzz", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown target(s): zzz" in unknown.stderr


def test_deploy_config_is_valid(tmp_path: Path) -> None:
    out = vigil(
        "check-config", str(Path(__file__).parents[2] / "deploy" / "exporter.yml"), cwd=tmp_path
    )
    assert out.returncode == 0 and "valid exporter configuration" in out.stdout, out.stderr


def _flask_with_session_cookie() -> Any:
    """A Flask page with a strict CSP and every header, but a session cookie that lacks
    Secure and HttpOnly: warnings only."""
    from flask import Flask, make_response

    app = Flask("vigil_test_gate")

    @app.route("/")
    def page() -> Any:
        resp = make_response("ok")
        resp.headers.update(
            {
                "X-Content-Type-Options": "nosniff",
                "X-Frame-Options": "DENY",
                "Content-Security-Policy": "default-src 'self'; object-src 'none'",
                "Cross-Origin-Opener-Policy": "same-origin",
                "Cross-Origin-Resource-Policy": "same-origin",
            }
        )
        resp.set_cookie("session", "s3cr3t-canary", samesite="Lax")
        return resp

    return app


def test_the_default_gate_fails_on_warnings_and_a_config_sets_it_per_check(
    tmp_path: Path, servers: Servers
) -> None:
    url = servers.wsgi(_flask_with_session_cookie())

    def write(gate: dict[str, Any] | None) -> Path:
        data: dict[str, Any] = {"targets": [{"name": "web", "base_url": url, "security": {}}]}
        if gate is not None:
            data["gate"] = gate
        path = tmp_path / f"gate{len(list(tmp_path.iterdir()))}.yml"
        path.write_text(yaml.safe_dump(data))
        return path

    default = vigil("validate", f"--config.file={write(None)}", cwd=tmp_path)
    assert default.returncode == 1, default.stdout + default.stderr
    assert "cookie_not_secure" in default.stdout and "cookie_not_httponly" in default.stdout
    assert "gate policy" in default.stderr and "s3cr3t-canary" not in default.stdout

    per_check = write({"fail_on": "warning", "checks": {"security": "critical"}})
    assert vigil("validate", f"--config.file={per_check}", cwd=tmp_path).returncode == 0
    relaxed = write({"fail_on": "critical"})
    assert vigil("validate", f"--config.file={relaxed}", cwd=tmp_path).returncode == 0
    # --fail-on, when given, is the one threshold for every check.
    forced = vigil("validate", f"--config.file={per_check}", "--fail-on=warning", cwd=tmp_path)
    assert forced.returncode == 1
    junit = tmp_path / "gate.xml"
    vigil("validate", f"--config.file={per_check}", "--format=junit", f"--output={junit}",
          cwd=tmp_path)
    case = next(ET.parse(junit).getroot().iter("testcase"))
    assert case.find("failure") is None and case.find("system-out") is not None

    bad = write({"checks": {"security": "sometimes"}})
    out = vigil("check-config", str(bad), cwd=tmp_path)
    assert out.returncode == 1 and "gate.checks.security" in out.stderr


@pytest.mark.parametrize(
    ("cors", "key", "says"),
    [
        ({"methods": ["GET", "POST"], "required_methods": ["PATCH"]}, "cors", "required_methods"),
        ({"request_headers": ["Content-Type"], "required_headers": ["X-API-Key"]}, "cors",
         "required_headers"),
        ({"methods": ["GET", "patch"]}, "cors.methods[1]", "upper case"),
        ({"disallowed_origins": ["https://*.evil.example"]}, "cors.disallowed_origins[0]", "glob"),
        ({"origins": ["https://a.example.com?x=1"]}, "cors.origins[0]", "no path, query"),
        ({"origins": ["https://App.Example.com"]}, "cors.origins[0]", "lower case"),
    ],
)
def test_cors_config_mistakes_are_rejected_naming_the_key(
    tmp_path: Path, cors: dict[str, Any], key: str, says: str
) -> None:
    config = write_cors_config(tmp_path / "exporter.yml", **cors)
    out = vigil("check-config", str(config), cwd=tmp_path)
    assert out.returncode == 1, out.stdout
    assert f"targets[0].{key}:" in out.stderr and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
