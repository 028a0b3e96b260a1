"""`vigil validate` as a deploy gate: exit codes, --fail-on, and the machine formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from vigil.demo.client import DemoTarget

from tests.exporter.helpers import demo_config_dict
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


def test_bad_config_exits_2_with_the_key_path(tmp_path: Path) -> None:
    config = tmp_path / "exporter.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "t",
                        "base_url": "http://x",
                        "cors": {"origins": ["https://a.example.com/app"]},
                    }
                ]
            }
        )
    )
    out = vigil("validate", f"--config.file={config}", cwd=tmp_path)
    assert out.returncode == 2
    assert f"{config}: targets[0].cors.origins[0]:" in out.stderr
    check = vigil("check-config", str(config), cwd=tmp_path)
    assert check.returncode == 1 and "targets[0].cors.origins[0]" in check.stderr
    missing = vigil("validate", f"--config.file={tmp_path / 'nope.yml'}", cwd=tmp_path)
    assert missing.returncode == 2 and "file not found" in missing.stderr
    ok = tmp_path / "ok.yml"
    ok.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {
                        "name": "t",
                        "base_url": "http://x",
                        "cors": {"origins": ["https://a.example.com"]},
                    }
                ]
            }
        )
    )
    unknown = vigil("validate", f"--config.file={ok}", "--target=zzz", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown target(s): zzz" in unknown.stderr


def test_deploy_config_is_valid(tmp_path: Path) -> None:
    out = vigil(
        "check-config", str(Path(__file__).parents[2] / "deploy" / "exporter.yml"), cwd=tmp_path
    )
    assert out.returncode == 0 and "valid exporter configuration" in out.stdout, out.stderr
