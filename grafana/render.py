"""Render every dashboard to deterministic JSON, and walk the JSON for its queries."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.grafana import config_schema, health, incidents, predictions

from vigil.paths import GRAFANA_DIR

__all__ = [
    "DASHBOARDS",
    "DASHBOARDS_DIR",
    "PanelQuery",
    "build_all",
    "iter_panels",
    "iter_queries",
    "render",
    "render_all",
    "stale_files",
]

DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

# file name -> builder. The file name is the provisioned path; the uid is set by the builder.
DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {
    "health.json": health.dashboard,
    "config-schema.json": config_schema.dashboard,
    "predictions.json": predictions.dashboard,
    "incidents.json": incidents.dashboard,
}


def render(dashboard: dict[str, Any]) -> str:
    """Serialise deterministically: sorted keys, indent 2, trailing newline."""
    return json.dumps(dashboard, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def render_all(forecasts_file: Path | None = None) -> dict[str, str]:
    """Every dashboard's file name and JSON text (predictions from forecasts_file if given)."""
    rendered = {name: render(build()) for name, build in DASHBOARDS.items()}
    if forecasts_file is not None:
        rendered["predictions.json"] = render(predictions.dashboard(forecasts_file))
    return rendered


def build_all(output_dir: Path = DASHBOARDS_DIR, forecasts_file: Path | None = None) -> list[Path]:
    """Write every dashboard into output_dir; return the paths written."""
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all(forecasts_file).items():
        path = output_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(output_dir: Path = DASHBOARDS_DIR) -> list[str]:
    """File names in output_dir that are missing or differ from a fresh build."""
    stale = []
    for name, text in render_all().items():
        path = output_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every non-row panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel: `kind` is "promql" or "sql"."""

    dashboard_uid: str
    panel_title: str
    ref_id: str
    kind: str
    text: str
    instant: bool


def iter_queries(dashboard: dict[str, Any]) -> Iterator[PanelQuery]:
    """Every PromQL expression and SQL statement of every panel."""
    uid = str(dashboard.get("uid", ""))
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                yield PanelQuery(uid, panel["title"], target["refId"], "promql", target["expr"],
                                 bool(target.get("instant")))
            elif "rawSql" in target:
                yield PanelQuery(uid, panel["title"], target["refId"], "sql", target["rawSql"],
                                 target.get("format") == "table")
            else:
                raise ValueError(f"{uid}: panel {panel['title']!r} has a target of unknown kind")
