"""`vigil check-config`: validate any Vigil config file, like `promtool check config`."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vigil.config import ConfigError, load_yaml
from vigil.service import ArgumentParser

__all__ = ["KINDS", "detect_kind", "main"]

# kind -> (module with load_config(path), top-level key that identifies the kind)
KINDS: dict[str, tuple[str, str]] = {
    "exporter": ("vigil.exporter.config", "targets"),
    "forecaster": ("vigil.forecaster.config", "forecasts"),
    "remediator": ("vigil.remediator.config", "procedures"),
    "demo-target": ("vigil.demo.settings", "cors"),
    "services": ("vigil.spec", "services"),
}


def detect_kind(data: Any, path: Path) -> str:
    """Name the kind of config from its top-level keys."""
    if isinstance(data, dict):
        for kind, (_, key) in KINDS.items():
            if key in data:
                return kind
    keys = ", ".join(f"'{k}'" for _, k in KINDS.values())
    raise ConfigError(path, "", f"cannot tell which component this is for: expected one of {keys} "
                      "at the top level (or pass --kind)")


def main(argv: Sequence[str]) -> int:
    parser = ArgumentParser(prog="vigil check-config", description=__doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="configuration files to check")
    parser.add_argument("--kind", choices=sorted(KINDS), help="config kind (default: detect)")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.files:
        path = Path(name)
        try:
            kind = args.kind or detect_kind(load_yaml(path), path)
            module = importlib.import_module(KINDS[kind][0])
            module.load_config(path)
        except ConfigError as exc:
            print(f"  FAILED: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"Checking {path}\n  SUCCESS: valid {kind} configuration")
    return 1 if failed else 0
