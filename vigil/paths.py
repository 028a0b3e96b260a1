"""Locate the files Vigil ships beside its code (rules, deploy configs, dashboards, demo data).

They are package data of the installed `vigil` distribution (`vigil.rules`, `vigil.deploy`,
`vigil.grafana`, `vigil.demo`) and are found through importlib.resources, so a wheel installed
anywhere finds them the same way an editable install of the checkout does. Wheels install
unpacked, so each is a real directory: Prometheus and promtool are handed these paths.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["DEMO_DIR", "DEPLOY_DIR", "GRAFANA_DIR", "RULES_DIR", "package_dir"]


def package_dir(package: str) -> Path:
    """The directory holding `package`'s files; a clear error if it is not on disk."""
    root = files(package)
    path = Path(str(root))
    if not path.is_dir():
        raise RuntimeError(f"{package}: package data is not an unpacked directory ({root})")
    return path


RULES_DIR = package_dir("vigil.rules")
DEPLOY_DIR = package_dir("vigil.deploy")
GRAFANA_DIR = package_dir("vigil.grafana")
DEMO_DIR = package_dir("vigil.demo")
