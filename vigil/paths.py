"""Locate the files Vigil ships beside its code (rules, deploy configs, demo data)."""

from __future__ import annotations

from pathlib import Path

# Vigil runs from its source checkout (editable install, see README); the
# non-Python folders of the design card live at the repository root.
REPO_ROOT = Path(__file__).resolve().parents[1]
RULES_DIR = REPO_ROOT / "rules"
DEPLOY_DIR = REPO_ROOT / "deploy"
GRAFANA_DIR = REPO_ROOT / "grafana"
DEMO_DIR = REPO_ROOT / "demo"

__all__ = ["DEMO_DIR", "DEPLOY_DIR", "GRAFANA_DIR", "REPO_ROOT", "RULES_DIR"]
