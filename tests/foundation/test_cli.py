"""Command-line behaviour: one-line errors and exit codes for bad input, and `vigil demo`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True,
                          timeout=timeout, check=False)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


@pytest.mark.parametrize("script", ["vigil", "vigil-exporter", "vigil-forecaster", "vigil-remediator"])
def test_bad_flag_is_one_line_exit_2(script: str) -> None:
    argv = (script, "demo", "--no-such-flag") if script == "vigil" else (script, "--no-such-flag")
    result = run(*argv)
    assert result.returncode == 2
    assert "--no-such-flag" in one_line(result.stderr)


def test_unknown_command() -> None:
    result = run("vigil", "frobnicate")
    assert result.returncode == 2
    assert "frobnicate" in one_line(result.stderr)


def test_bad_listen_address() -> None:
    result = run("vigil", "demo-target", "--web.listen-address", "nowhere")
    assert result.returncode == 2
    assert "nowhere" in one_line(result.stderr)


def test_bad_config_names_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "target.yml"
    bad.write_text("cors:\n  max_age: -1\n")
    result = run("vigil", "demo-target", "--config.file", str(bad), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert str(bad) in line and "cors.max_age" in line


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    bad = tmp_path / "target.yml"
    bad.write_text("cors: [\n")
    result = run("vigil", "check-config", "--kind", "demo-target", str(bad))
    assert result.returncode == 1
    assert "line 2" in one_line(result.stderr)


def test_check_config_accepts_valid_and_rejects_unknown_key(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text("cors:\n  allow_origins: [https://a.example]\n")
    result = run("vigil", "check-config", str(good))
    assert result.returncode == 0, result.stderr
    assert "SUCCESS" in result.stdout
    typo = tmp_path / "typo.yml"
    typo.write_text("cors:\n  allow_orgins: [https://a.example]\n")
    result = run("vigil", "check-config", str(typo))
    assert result.returncode == 1
    assert "cors.allow_orgins" in one_line(result.stderr)


def test_demo_runs_whole_loop_and_stops_cleanly(tmp_path: Path) -> None:
    result = run("vigil", "demo", "--duration", "6", "--workdir", str(tmp_path / "demo"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vigil demo is up" in result.stdout
    assert "demo=1" in result.stdout  # Prometheus' `up` for the demo target, queried live
    assert "stopped cleanly" in result.stdout


def test_demo_sigterm_stops_every_child(tmp_path: Path) -> None:
    import re
    import signal
    import time

    import requests

    proc = subprocess.Popen([str(BIN / "vigil"), "demo", "--workdir", str(tmp_path / "demo")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    urls: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        urls += re.findall(r"http://127\.0\.0\.1:\d+", line) if "http://" in line and "Try" not in line else []
        if "Press Ctrl-C" in line:
            break
    assert urls, "vigil demo printed no URLs"
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopped cleanly" in rest
    time.sleep(0.5)
    for url in urls:
        try:
            requests.get(f"{url}/-/healthy", timeout=2)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"{url} still answers after vigil demo stopped")
