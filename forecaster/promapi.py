"""Read series from the Prometheus HTTP API with `requests`: chunked range queries, retries.

Prometheus refuses range queries over 11,000 points per series, so a long history is read
in chunks of at most `MAX_POINTS_PER_CHUNK` steps and stitched back together per series.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import requests
from vigil.forecaster.config import PrometheusConfig

__all__ = [
    "MAX_POINTS_PER_CHUNK",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusUnavailable",
    "Series",
    "chunk_ranges",
    "clean_series",
]

log = logging.getLogger("vigil.forecaster.promapi")

# Prometheus' hard limit is 11,000 points per series; stay well under it.
MAX_POINTS_PER_CHUNK = 10_000


class PrometheusError(Exception):
    """Prometheus answered, but refused the query (bad PromQL, limits): retrying won't help."""


class PrometheusUnavailable(Exception):
    """Prometheus could not be reached, or kept answering 5xx/429, after all retries."""


@dataclass
class Series:
    """One series of a query result: its labels and its samples, sorted by time."""

    labels: dict[str, str]
    timestamps: np.ndarray  # float seconds
    values: np.ndarray = field(repr=False)

    @property
    def key(self) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.labels.items()))


def chunk_ranges(start: float, end: float, step: float,
                 max_points: int = MAX_POINTS_PER_CHUNK) -> list[tuple[float, float]]:
    """Split [start, end] into consecutive ranges of at most max_points steps each."""
    if end < start:
        return []
    span = step * (max_points - 1)
    ranges = []
    lo = start
    while lo <= end:
        hi = min(end, lo + span)
        ranges.append((lo, hi))
        lo = hi + step
    return ranges


def clean_series(timestamps: np.ndarray, values: np.ndarray, *,
                 counter: bool) -> tuple[np.ndarray, np.ndarray]:
    """Drop NaN/Inf samples and duplicate times; undo counter resets when `counter` is set.

    A counter reset (a drop in a monotonic series) is undone by adding the value before the
    drop to everything after it, the way rate() treats resets. Gaps stay gaps: Prophet does
    not need a regular grid.
    """
    order = np.argsort(timestamps, kind="stable")
    ts, vs = timestamps[order], values[order]
    keep = np.isfinite(vs)
    ts, vs = ts[keep], vs[keep]
    if len(ts):
        unique = np.concatenate([[True], np.diff(ts) > 0])
        ts, vs = ts[unique], vs[unique]
    if counter and len(vs) > 1:
        drops = np.diff(vs) < 0
        if drops.any():
            offsets = np.concatenate([[0.0], np.cumsum(np.where(drops, vs[:-1], 0.0))])
            vs = vs + offsets
    return ts, vs


def looks_like_counter(name: str, values: np.ndarray) -> bool:
    """True for a `_total`/`_count`/`_sum`/`_bucket` series that only grows except for resets."""
    if not name.endswith(("_total", "_count", "_sum", "_bucket")) or len(values) < 3:
        return False
    drops = np.diff(values) < 0
    return bool(drops.sum() <= max(1, len(values) // 100))


class PrometheusClient:
    """A small client for /api/v1/query_range and /api/v1/query with bounded backoff retries."""

    def __init__(self, config: PrometheusConfig, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.base = config.url.rstrip("/")
        self.session = session or requests.Session()
        self.sleep = sleep
        self.headers, self.auth = config.auth.headers_and_auth()

    def _get(self, path: str, params: dict[str, str]) -> dict:
        attempts = self.config.retries + 1
        last = "no attempt"
        for attempt in range(attempts):
            if attempt:
                delay = min(self.config.backoff_max, 0.5 * 2 ** (attempt - 1))
                self.sleep(delay)
            try:
                resp = self.session.post(f"{self.base}{path}", data=params, headers=self.headers,
                                         auth=self.auth, timeout=self.config.timeout)
            except requests.RequestException as exc:
                last = exc.__class__.__name__
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            try:
                body = resp.json()
            except ValueError:
                raise PrometheusError(f"HTTP {resp.status_code}: not JSON") from None
            if resp.status_code != 200 or body.get("status") != "success":
                raise PrometheusError(f"HTTP {resp.status_code}: {body.get('errorType', '')}: "
                                      f"{body.get('error', '')}".strip())
            return body["data"]
        raise PrometheusUnavailable(f"{self.base} unreachable after {attempts} attempts ({last})")

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        """Run a range query in chunks; merge each series across chunks (by its labels)."""
        merged: dict[tuple[tuple[str, str], ...], tuple[dict[str, str], list[np.ndarray],
                                                         list[np.ndarray]]] = {}
        start = math.floor(start / step) * step  # align so chunks hit the same grid
        for lo, hi in chunk_ranges(start, end, step):
            data = self._get("/api/v1/query_range", {"query": query, "start": f"{lo:.3f}",
                                                     "end": f"{hi:.3f}", "step": f"{step:g}"})
            if data.get("resultType") != "matrix":
                raise PrometheusError(f"expected a range vector result, got {data.get('resultType')}")
            for item in data["result"]:
                labels = dict(item["metric"])
                key = tuple(sorted(labels.items()))
                raw = item.get("values", [])
                ts = np.array([float(p[0]) for p in raw], dtype=float)
                vs = np.array([float(p[1]) for p in raw], dtype=float)  # "NaN", "+Inf" parse
                entry = merged.setdefault(key, (labels, [], []))
                entry[1].append(ts)
                entry[2].append(vs)
        return [Series(labels, np.concatenate(tss) if tss else np.array([]),
                       np.concatenate(vss) if vss else np.array([]))
                for labels, tss, vss in merged.values()]

    def query(self, query: str, at: float | None = None) -> list[tuple[dict[str, str], float]]:
        """Instant query; returns (labels, value) per series."""
        params = {"query": query}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            return [({}, float(data["result"][1]))]
        return [(dict(r["metric"]), float(r["value"][1])) for r in data.get("result", [])]
