"""Rank a set of alerts outside the remediator: the scenario runner's `root_cause_top1` hook.

The remediator only ranks the alerts Alertmanager sends it (in the bundled routing, those
with `remediation="auto"`). A scenario run sees every alert in Prometheus, so this ranks any
list of alerts with the same evidence and weights, reading findings and anomalies from
Prometheus exactly as the remediator does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
from vigil.remediator.config import IntelligenceSettings
from vigil.remediator.intelligence.correlation import service_of
from vigil.remediator.intelligence.prom import PromClient, window
from vigil.remediator.intelligence.rootcause import Member, rank

__all__ = ["rank_alerts", "top_root_cause"]


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromtimestamp(float(value), UTC)


async def rank_alerts(alerts: Sequence[Mapping[str, Any]], prometheus_url: str | None = None,
                      settings: IntelligenceSettings | None = None,
                      procedures: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Rank alerts as one group: [{alertname, score, evidence, ...}], most probable cause first.

    alerts: {"alertname", "labels" (optional), "starts_at" (epoch seconds or datetime)}.
    procedures: alert names that have a remediation procedure (the +0.5 tie-breaker).
    """
    st = settings or IntelligenceSettings()
    members = [Member(i, str(a["alertname"]), service_of(a.get("labels") or {}, st),
                      _when(a["starts_at"]), str(a["alertname"]) in procedures)
               for i, a in enumerate(alerts)]
    if not members:
        return []
    signals = []
    if prometheus_url:
        first = min(m.starts_at for m in members)
        start, end = window(first, st.evidence_lookback, min(30.0, st.window))
        end = min(end, max(datetime.now(UTC), first))
        async with aiohttp.ClientSession() as session:
            signals = await PromClient(session, prometheus_url).signals(
                start, end, {m.service for m in members if m.service})
    return rank(members, signals, st)


def top_root_cause(alerts: Sequence[Mapping[str, Any]], prometheus_url: str | None = None,
                   settings: IntelligenceSettings | None = None,
                   procedures: Sequence[str] = ()) -> str | None:
    """The alert name ranked first (synchronous; for the scenario runner and scripts)."""
    ranked = asyncio.run(rank_alerts(alerts, prometheus_url, settings, procedures))
    return ranked[0]["alertname"] if ranked else None
