"""Read exporter findings, forecaster anomalies and request counts from Prometheus' HTTP API."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from vigil.remediator.intelligence.rootcause import Signal

__all__ = ["FINDING_QUERIES", "SAFE_LABEL_VALUE", "PromClient"]

log = logging.getLogger("vigil.remediator.intelligence")
# label values that may be pasted into PromQL (labels come from whoever reaches Alertmanager)
SAFE_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
# (query, signal name: a label to read it from, or a fixed name)
FINDING_QUERIES: tuple[tuple[str, str, str], ...] = (
    ("vigil_finding_info", "label", "check"),
    ("vigil_cors_preflight_allowed == 0", "fixed", "cors"),
    ("vigil_env_valid == 0", "fixed", "env"),
    ("vigil_schema_consistent == 0", "fixed", "schema"),
)
ANOMALY_QUERY = ("vigil_forecast_anomaly == 1", "label", "forecast")


class PromClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, timeout: float = 5.0) -> None:
        self.session = session
        self.base = base_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.base}{path}", params=params, timeout=self.timeout) as resp:
            body = await resp.json(content_type=None)
        if resp.status != 200 or body.get("status") != "success":
            raise RuntimeError(f"HTTP {resp.status}: {str(body.get('error', ''))[:200]}")
        return list(body["data"]["result"])

    async def scalar(self, query: str, at: datetime) -> float | None:
        """Sum of an instant query's values at `at`; None for an empty result."""
        result = await self._get("/api/v1/query", {"query": query, "time": f"{at.timestamp():.3f}"})
        if not result:
            return None
        return sum(float(r["value"][1]) for r in result)

    async def signals(self, start: datetime, end: datetime, services: set[str]) -> list[Signal]:
        """Findings and anomalies present in [start, end], each with when its latest run began."""
        span = max(1.0, (end - start).total_seconds())
        step = max(1.0, span / 250)
        out: list[Signal] = []
        for kind, specs in (("finding", FINDING_QUERIES), ("anomaly", (ANOMALY_QUERY,))):
            for query, how, name in specs:
                try:
                    series = await self._get("/api/v1/query_range", {
                        "query": query, "start": f"{start.timestamp():.3f}",
                        "end": f"{end.timestamp():.3f}", "step": f"{step:g}"})
                except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, RuntimeError) as exc:
                    log.warning("evidence query %s failed: %s", query, exc)
                    continue
                for s in series:
                    labels = {k: str(v) for k, v in s.get("metric", {}).items()}
                    where = {labels.get("target", ""), labels.get("job", "")} - {""}
                    if services and where and not (where & services):
                        continue
                    times = [float(v[0]) for v in s.get("values", [])]
                    if not times:
                        continue
                    # the run of consecutive points that ends last: when did it begin?
                    onset = times[-1]
                    for t in reversed(times):
                        if onset - t > 2.5 * step:
                            break
                        onset = t
                    sig_name = labels.get(name, "") if how == "label" else name
                    out.append(Signal(kind, sig_name, datetime.fromtimestamp(onset, UTC),
                                      onset - start.timestamp() <= step, labels))
        return out


def promql_range(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def window(first: datetime, lookback: float, slack: float = 30.0) -> tuple[datetime, datetime]:
    return first - timedelta(seconds=lookback), first + timedelta(seconds=slack)
