"""Feed a real Prometheus with synthetic series: OpenMetrics text -> promtool TSDB blocks."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from tests.harness import require_binary


def write_openmetrics(path: Path, series: Iterable[tuple[str, dict[str, str], np.ndarray,
                                                         np.ndarray]]) -> None:
    """Write (name, labels, timestamps, values) as one gauge family per name, with timestamps."""
    by_name: dict[str, list[str]] = {}
    for name, labels, ts, vs in series:
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines = by_name.setdefault(name, [])
        for t, v in zip(ts, vs, strict=True):
            lines.append(f"{name}{{{label_text}}} {float(v)!r} {float(t):.3f}")
    with path.open("w") as out:
        for name, lines in by_name.items():
            out.write(f"# TYPE {name} gauge\n")
            out.write("\n".join(lines) + "\n")
        out.write("# EOF\n")


def create_blocks(data_dir: Path, series: Iterable[tuple[str, dict[str, str], np.ndarray,
                                                         np.ndarray]]) -> None:
    """Backfill TSDB blocks into data_dir with `promtool tsdb create-blocks-from openmetrics`."""
    promtool = require_binary("promtool")
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "backfill.om"
    write_openmetrics(source, series)
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                    str(data_dir)], check=True, capture_output=True, timeout=120)


def start_with_series(prometheus_factory: Callable[..., tuple[Any, str]], tmp_path: Path,
                      series: list[tuple[str, dict[str, str], np.ndarray, np.ndarray]]
                      ) -> tuple[Any, str]:
    """Backfill series, then start Prometheus on that data dir (no scrape targets)."""
    # prometheus_factory starts its n-th server in tmp_path/prometheus-<n>/data
    create_blocks(tmp_path / "prometheus-0" / "data", series)
    return prometheus_factory({"global": {"scrape_interval": "15s"}, "scrape_configs": []})
