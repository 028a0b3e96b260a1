"""User-facing impact of an incident from Prometheus: requests failed and error budget burned."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp
from vigil.remediator.config import ImpactSettings
from vigil.remediator.intelligence.prom import SAFE_LABEL_VALUE, PromClient, promql_range
from vigil.remediator.templating import render

__all__ = ["measure_impact"]


async def measure_impact(prom: PromClient, settings: ImpactSettings, labels: dict[str, str],
                         service: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Failed and total requests over [start, end] and the share of the SLO period's budget burned.

    Requests = the query's per-second rate (over max(duration, min_range), ending at `end`)
    times the duration, so a short incident is not lost to too few samples.

    error_budget_burned = (failed / total) / (1 - objective) * duration / slo_period: the
    fraction of the whole period's error budget this incident used, assuming the period's
    traffic looks like the incident's.
    """
    duration = max(1.0, (end - start).total_seconds())
    values = {"job": labels.get("job", service), "instance": labels.get("instance", ""),
              "service": service, "range": promql_range(max(duration, settings.min_range))}
    for name in ("job", "instance", "service"):
        if values[name] and not SAFE_LABEL_VALUE.fullmatch(values[name]):
            return {"error": f"label {name!r} is not safe to use in PromQL"}
    out: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(),
                           "duration_seconds": round(duration, 3)}
    try:
        failed = await prom.scalar(render(settings.failed_requests, values), end)
        total = await prom.scalar(render(settings.total_requests, values), end)
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, RuntimeError) as exc:
        return {**out, "error": f"query failed: {exc.__class__.__name__}"}
    # average rates over max(duration, min_range), times the time the incident was open
    failed = (failed or 0.0) * duration
    total = (total or 0.0) * duration
    out["failed_requests"] = round(failed, 3)
    out["total_requests"] = round(total, 3)
    if total:
        ratio = failed / total
        out["error_ratio"] = round(ratio, 6)
        out["error_budget_burned"] = round(
            ratio / (1 - settings.slo_objective) * duration / settings.slo_period, 9)
    else:
        out["error_ratio"] = None
        out["error_budget_burned"] = 0.0
    return out
