"""Shared paths and helpers for the deploy tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness import REPO_ROOT
from vigil.paths import DEPLOY_DIR

# The configs other components ship in deploy/; compose, systemd and Kubernetes use them.
SHIPPED_CONFIGS = ("exporter.yml", "forecasts.yml", "remediator.yml", "procedures.yml",
                   "alertmanager.yml")
RENDER_SCRIPT = DEPLOY_DIR / "systemd" / "render-configs.sh"


def require_shipped_configs() -> None:
    """The shipped configs are written by other components; name the missing ones."""
    missing = [name for name in SHIPPED_CONFIGS if not (DEPLOY_DIR / name).exists()]
    if missing:
        pytest.fail(f"deploy/ lacks {missing}: the deploy files reference them", pytrace=False)


def render_configs(dst: Path, *, secrets_dir: str = "/run/secrets", src: Path = DEPLOY_DIR,
                   extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run deploy/systemd/render-configs.sh the way compose and systemd do."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "VIGIL_SECRETS_DIR": secrets_dir,
           "VIGIL_STATE_ROOT": "/var/lib/vigil",
           "VIGIL_REMEDIATOR_DATABASE_URL_FILE": f"{secrets_dir}/remediator-database-url",
           **(extra_env or {})}
    return subprocess.run(["sh", str(RENDER_SCRIPT), str(src), str(dst)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


__all__ = ["DEPLOY_DIR", "REPO_ROOT", "SHIPPED_CONFIGS", "render_configs",
           "require_shipped_configs"]
