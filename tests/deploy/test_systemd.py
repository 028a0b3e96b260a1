"""systemd units: `systemd-analyze verify` accepts them, and they carry the hardening options."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.helpers import DEPLOY_DIR, REPO_ROOT
from tests.harness import in_ci

UNIT_DIR = DEPLOY_DIR / "systemd"
SERVICES = ("vigil-exporter", "vigil-forecaster", "vigil-remediator")
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
             "PrivateTmp": "yes", "PrivateDevices": "yes", "CapabilityBoundingSet": "",
             "RestrictSUIDSGID": "yes", "SystemCallArchitectures": "native",
             "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes"}


def _parse(path: Path) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text().replace("\\\n", " "))
    return parser


def _installed_copy(tmp_path: Path) -> list[Path]:
    """The units with /opt/vigil pointing at this checkout, so ExecStart paths exist."""
    copies = []
    for unit in sorted(UNIT_DIR.glob("*.service")):
        text = unit.read_text().replace("/opt/vigil/.venv/", f"{REPO_ROOT}/.venv/")
        text = text.replace("/opt/vigil/deploy/", f"{DEPLOY_DIR}/")
        copy = tmp_path / unit.name
        copy.write_text(text)
        copies.append(copy)
    return copies


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        message = "systemd-analyze not installed (Debian package systemd)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return subprocess.run([binary, "verify", "--man=no", *map(str, units)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    units = _installed_copy(tmp_path)
    assert {u.stem for u in units} >= {*SERVICES, "vigil-configs"}
    result = _verify(units)
    # verify exits 0 on unknown keys and bad values too; it reports them on stderr
    problems = [line for line in (result.stdout + result.stderr).splitlines()
                if str(tmp_path) in line]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_systemd_analyze_verify_catches_a_bad_value(tmp_path: Path) -> None:
    units = _installed_copy(tmp_path)
    bad = units[0]
    bad.write_text(bad.read_text().replace("ProtectSystem=strict", "ProtectSystem=verystrict"))
    result = _verify([bad])
    assert "protect system" in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize("name", SERVICES)
def test_service_units_are_hardened_and_need_rendered_configs(name: str) -> None:
    unit = _parse(UNIT_DIR / f"{name}.service")
    service = unit["Service"]
    for key, value in HARDENING.items():
        assert service.get(key) == value, (name, key)
    assert service["User"] == "vigil" and service["StateDirectory"].startswith("vigil/")
    exec_start = service["ExecStart"].split()
    assert exec_start[0] == f"/opt/vigil/.venv/bin/{name}"
    assert "--web.listen-address=127.0.0.1:" in " ".join(exec_start)
    config = next(a for a in exec_start if a.startswith("--config.file="))
    shipped = config.split("=", 1)[1].replace("/etc/vigil/", "")
    assert shipped in (DEPLOY_DIR / "systemd/render-configs.sh").read_text(), shipped
    assert "vigil-configs.service" in unit["Unit"]["Requires"]


def test_listen_ports_match_prometheus_targets() -> None:
    import yaml

    prom = yaml.safe_load((DEPLOY_DIR / "prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"][0] for j in prom["scrape_configs"]}
    for name in SERVICES:
        exec_start = _parse(UNIT_DIR / f"{name}.service")["Service"]["ExecStart"]
        listen = next(a for a in exec_start.split() if a.startswith("--web.listen-address="))
        assert listen.split("=", 1)[1] == targets[name]
