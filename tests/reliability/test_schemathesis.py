"""Schemathesis against the remediator's own /api/v1/openapi.json, on a real process.

Two runs, because the webhook and the admin API use different credentials: the admin
operations with the admin token, the webhook with the webhook token. Checks: no 5xx
(`not_a_server_error`) and auth is enforced (`ignored_auth`: the same request without
credentials must be refused). Schemathesis works offline: it only talks to the loopback port.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

# schemathesis is a declared test dependency: a missing one fails here rather than skipping
import schemathesis  # noqa: F401

from tests.reliability.helpers import (
    ADMIN_TOKEN,
    WEBHOOK_TOKEN,
    remediator_config,
    remediator_process,
)

MAX_EXAMPLES = 30


def run_schemathesis(url: str, token: str, path_filter: list[str], report: Path) -> tuple[int, str]:
    st = Path(sys.executable).with_name("st")
    argv = [str(st), "run", f"{url}/api/v1/openapi.json", "--checks", "not_a_server_error,ignored_auth",
            "--max-examples", str(MAX_EXAMPLES), "--generation-deterministic",
            "--workers", "1", "--request-timeout", "20",
            "--no-color", "--report", "junit", "--report-junit-path", str(report),
            "-H", f"Authorization: Bearer {token}", *path_filter]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    return done.returncode, done.stdout + done.stderr


def generated(output: str) -> int:
    m = re.search(r"(\d+) generated", output)
    return int(m.group(1)) if m else 0


def test_schemathesis_finds_no_server_error_and_no_ignored_auth(
        tmp_path: Path, pg_url: str, start_process: Any) -> None:
    spec = remediator_config(tmp_path, pg_url, "schemathesis", [
        {"name": "approve-me", "match": ['alertname="Schemathesis"'], "requires_approval": True,
         "steps": [{"action": "wait", "seconds": 0}]}])
    start_process(remediator_process(spec, tmp_path))
    admin_rc, admin_out = run_schemathesis(spec.url, ADMIN_TOKEN,
                                           ["--exclude-path", "/api/v1/alerts"], tmp_path / "admin.xml")
    hook_rc, hook_out = run_schemathesis(spec.url, WEBHOOK_TOKEN,
                                         ["--include-path", "/api/v1/alerts"], tmp_path / "hook.xml")
    cases = generated(admin_out) + generated(hook_out)
    print(f"\nschemathesis: {cases} generated cases")
    assert cases >= 100, admin_out + hook_out
    assert admin_rc == 0, admin_out[-4000:]
    assert hook_rc == 0, hook_out[-4000:]
