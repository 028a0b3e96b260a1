"""Secret values never leave the exporter: plant canary secrets, exercise every output (the
/metrics exposition, the exporter's debug log, every `vigil validate` format, the baseline
file, `vigil check-config` errors) and search all of it for the canaries."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests
import yaml
from vigil.demo.client import DemoTarget

from tests.exporter.helpers import demo_config_dict
from vigil.procs import ManagedProcess, free_port

CORE = "K4N4RY" + secrets.token_hex(4)  # no test path or name contains this


def canary(tag: str) -> str:
    return f"{tag}{CORE}"


def vigil(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", *args],
        check=False,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "2000", **env},
        cwd=cwd,
        timeout=120,
    )


def test_canary_secrets_never_appear_in_any_output(
    demo_target: DemoTarget, tmp_path: Path, start_process
) -> None:  # type: ignore[no-untyped-def]
    outputs: dict[str, str] = {}
    # Secrets in the env source: each one trips a different rule.
    dotenv = tmp_path / "app.env"
    dotenv.write_text(
        f"API_KEY={canary('bad-pattern-')}\n"  # pattern_mismatch
        f"PORT={canary('port')}\n"  # invalid (not a port)
        f"LOG_LEVEL={canary('lvl')}\n"  # invalid enum
        f"STRIPE_KEY=sk_test_{canary('A1b2C3d4')}\n"  # test key
        f"DB_URL=postgresql://app:{canary('pw')}@db:5432/app\n"
    )
    # A wrong API key for the target's requests (from a secret file): 401s, never echoed.
    header_file = tmp_path / "api-key"
    header_file.write_text(canary("header"))
    data = demo_config_dict(demo_target, tmp_path)
    target = data["targets"][0]
    target["headers_from_file"] = {"X-API-Key": str(header_file)}
    target["env"] = {
        "source": "dotenv",
        "file": str(dotenv),
        "baseline_file": str(tmp_path / "baseline.yml"),
        "variables": [
            {"name": "API_KEY", "secret": True, "pattern": "^[a-z]{8}$"},
            {"name": "PORT", "type": "port"},
            {"name": "LOG_LEVEL", "type": "enum", "values": ["info", "debug"]},
            {"name": "STRIPE_KEY", "secret": True, "format": "stripe_secret_key"},
            {"name": "DB_URL", "secret": True, "type": "url", "format": "database_url"},
            {"name": "FROM_PROCESS", "secret": True, "required": False},
        ],
    }
    config = tmp_path / "exporter.yml"
    config.write_text(yaml.safe_dump(data))
    env = {"FROM_PROCESS": canary("proc")}

    # Baseline, then change a secret so drift is reported too.
    proc = vigil(
        "validate", f"--config.file={config}", "--write-env-baseline", env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    outputs["baseline"] = (tmp_path / "baseline.yml").read_text()
    dotenv.write_text(dotenv.read_text().replace(canary("pw"), canary("pw2")))

    # The exporter as a real process, debug logging on.
    port = free_port()
    exporter = start_process(
        ManagedProcess(
            name="vigil-exporter",
            argv=[
                sys.executable,
                "-c",
                "from vigil.exporter.service import main; main()",
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=debug",
            ],
            log_path=tmp_path / "exporter.log",
            ready_url=f"http://127.0.0.1:{port}/-/ready",
            env=env,
        )
    )
    for _ in range(2):
        resp = requests.get(
            f"http://127.0.0.1:{port}/metrics",
            timeout=30,
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"},
        )
        assert resp.status_code == 200
        outputs["metrics"] = resp.text
    exporter.stop()
    outputs["exporter log"] = exporter.log_path.read_text()
    # The checks really ran into the planted problems.
    assert 'rule="pattern_mismatch"' in outputs["metrics"]
    assert 'rule="drift",severity="warning",subject="DB_URL"' in outputs["metrics"]
    assert 'rule="unexpected_status"' in outputs["metrics"]

    for fmt in ("table", "json", "junit", "sarif"):
        out_file = tmp_path / f"report.{fmt}"
        args = ["validate", f"--config.file={config}", f"--format={fmt}", "--log.level=debug"]
        if fmt != "table":
            args.append(f"--output={out_file}")
        proc = vigil(*args, env=env, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr  # findings, and every check ran
        outputs[f"validate {fmt}"] = proc.stdout + proc.stderr
        if fmt != "table":
            outputs[f"validate {fmt} file"] = out_file.read_text()
    assert "pattern_mismatch" in outputs["validate json file"]

    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "scrape_timeout": canary("t"),
                "targets": [{"name": "x", "base_url": f"http://user:{canary('url')}@host"}],
            }
        )
    )
    proc = vigil("check-config", str(bad), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "scrape_timeout" in proc.stderr
    outputs["check-config"] = proc.stdout + proc.stderr
    bad.write_text(
        yaml.safe_dump(
            {"targets": [{"name": "x", "base_url": f"http://user:{canary('url')}@host"}]}
        )
    )
    proc = vigil("check-config", str(bad), env=env, cwd=tmp_path)
    assert proc.returncode == 1 and "base_url" in proc.stderr
    outputs["check-config 2"] = proc.stdout + proc.stderr

    leaks = [name for name, text in outputs.items() if CORE in text]
    assert leaks == [], f"canary secret leaked into: {leaks}"
