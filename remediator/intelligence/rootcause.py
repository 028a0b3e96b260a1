"""Root-cause ranking: score every alert of a group from evidence (pure logic, no I/O).

Evidence and weights (docs/incidents.md explains each):
  first started            +3   the earliest alert of the group (ties within 1 s share it);
                                derived alerts start when their windows say, so they only
                                compete when the group has nothing else
  explains an alert        +4   `alert_links` says it causes another member's alert
  explained by an alert    -2   another member's alert causes it (`alert_links`)
  dependency direction     +4   its service is a dependency of another member's service
                           -2   its service calls another member's service
  symptom class            -2   the alert name matches `symptom_alerts` (a user-facing effect)
  derived signal           -3   it matches `derived_alerts` (budgets, forecasts, scores, Vigil itself)
  finding changed before   +3   a linked exporter finding began within the lookback, before the group
  long-standing finding    +1   a linked finding was already active before the lookback
  anomaly began earlier    +2   a linked forecaster anomaly began before this alert
  procedure available      +0.5 tie-breaker: Vigil knows how to fix it
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from vigil.remediator.config import IntelligenceSettings
from vigil.remediator.intelligence.correlation import dependency_closure

__all__ = ["Member", "Signal", "rank"]

TIE_SECONDS = 1.0


@dataclass
class Member:
    incident: int
    alertname: str
    service: str
    starts_at: datetime
    has_procedure: bool


@dataclass
class Signal:
    """An exporter finding or forecaster anomaly seen in Prometheus, with when it began."""

    kind: str  # finding | anomaly
    name: str  # finding check / forecast name
    onset: datetime
    since_lookback_start: bool  # already active at the start of the lookback window
    labels: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(self.labels.items())
                          if k in ("target", "rule", "subject", "method", "origin", "job"))
        return f"{self.kind} {self.name}" + (f" ({extra})" if extra else "")


def _links(settings: IntelligenceSettings, kind: str) -> list[tuple[re.Pattern[str], re.Pattern[str]]]:
    links = settings.finding_links if kind == "finding" else settings.anomaly_links
    return [(re.compile(link.match), re.compile(link.explains)) for link in links]


def explains(signal: Signal, alertname: str, settings: IntelligenceSettings) -> bool:
    return any(m.fullmatch(signal.name) and e.fullmatch(alertname)
               for m, e in _links(settings, signal.kind))


def rank(members: Sequence[Member], signals: Sequence[Signal],
         settings: IntelligenceSettings) -> list[dict[str, Any]]:
    """Members ranked most probable cause first: [{incident, alertname, score, evidence}]."""
    if not members:
        return []
    symptom = re.compile(settings.symptom_alerts)
    derived = re.compile(settings.derived_alerts)
    first = min(m.starts_at for m in members)
    # a burn rate or a forecast fires when its windows fill, not when the cause began: the
    # first-started credit goes to the earliest primary alert when the group has one
    primary = [m for m in members if not derived.fullmatch(m.alertname)]
    first_primary = min(m.starts_at for m in primary) if primary else first
    alert_links = [(re.compile(link.match), re.compile(link.explains))
                   for link in settings.alert_links]
    # which links each alert name can be the cause / the effect of, matched once per name: the
    # pairs below are n^2 (2,500 for a full group of 50), and matching every link's regular
    # expressions for every pair took ~10 ms per ranking, on the event loop
    as_cause = {name: frozenset(k for k, (c, _) in enumerate(alert_links) if c.fullmatch(name))
                for name in {m.alertname for m in members}}
    as_effect = {name: frozenset(k for k, (_, e) in enumerate(alert_links) if e.fullmatch(name))
                 for name in as_cause}

    def causes(cause: Member, effect: Member) -> bool:
        same = not cause.service or not effect.service or cause.service == effect.service
        return same and not as_cause[cause.alertname].isdisjoint(as_effect[effect.alertname])

    ranked: list[dict[str, Any]] = []
    for m in members:
        ev: list[dict[str, Any]] = []
        delay = (m.starts_at - first_primary).total_seconds()
        if primary and derived.fullmatch(m.alertname):
            ev.append({"kind": "derived_timing", "weight": 0.0,
                       "detail": f"{m.alertname} is derived: its start reflects its windows "
                                 f"({m.starts_at.isoformat()})"})
        elif delay <= TIE_SECONDS:
            ev.append({"kind": "first_started", "weight": 3.0,
                       "detail": f"started first in the group ({m.starts_at.isoformat()})"})
        else:
            ev.append({"kind": "started_later", "weight": 0.0,
                       "detail": f"started {delay:.0f}s after the group's first alert"})
        for other in members:
            if other is not m and causes(m, other):
                ev.append({"kind": "explains_alert", "weight": 4.0,
                           "detail": f"{m.alertname} causes {other.alertname} "
                                     "(intelligence.alert_links)"})
                break
        for other in members:
            if other is not m and causes(other, m):
                ev.append({"kind": "explained_by", "weight": -2.0,
                           "detail": f"{other.alertname}, also in the group, causes it "
                                     "(intelligence.alert_links)"})
                break
        deps = dependency_closure(settings.dependencies, m.service) if m.service else set()
        for other in members:
            if other.service == m.service or not other.service or not m.service:
                continue
            if m.service in dependency_closure(settings.dependencies, other.service):
                ev.append({"kind": "dependency", "weight": 4.0,
                           "detail": f"{m.service} is a dependency of {other.service} "
                                     f"({other.alertname}): a failing dependency explains its callers' errors"})
                break
        for other in members:
            if other.service and other.service != m.service and other.service in deps:
                ev.append({"kind": "dependent", "weight": -2.0,
                           "detail": f"{m.service} calls {other.service} ({other.alertname}), "
                                     "which also alerts"})
                break
        if derived.fullmatch(m.alertname):
            ev.append({"kind": "derived_signal", "weight": -3.0,
                       "detail": f"{m.alertname} is derived from other signals "
                                 "(intelligence.derived_alerts)"})
        elif symptom.fullmatch(m.alertname):
            ev.append({"kind": "symptom_class", "weight": -2.0,
                       "detail": f"{m.alertname} describes a user-facing effect "
                                 "(intelligence.symptom_alerts)"})
        counted: set[tuple[str, str]] = set()
        for s in sorted(signals, key=lambda sig: sig.onset):
            # one finding or anomaly is one piece of evidence, however many series carry it
            # (a CORS finding has one per origin and method): its earliest onset counts
            if (s.kind, s.name) in counted or not explains(s, m.alertname, settings):
                continue
            counted.add((s.kind, s.name))
            if s.kind == "finding":
                if s.since_lookback_start:
                    ev.append({"kind": "finding", "weight": 1.0,
                               "detail": f"{s.describe()} was already active before the lookback"})
                elif s.onset <= first + _slack(settings):
                    lead = (first - s.onset).total_seconds()
                    ev.append({"kind": "finding", "weight": 3.0,
                               "detail": f"{s.describe()} changed at {s.onset.isoformat()} "
                                         f"({lead:.0f}s before the group's first alert)"})
            elif s.onset <= m.starts_at:
                lead = (m.starts_at - s.onset).total_seconds()
                ev.append({"kind": "anomaly", "weight": 2.0,
                           "detail": f"{s.describe()} began {lead:.0f}s before this alert"})
        if m.has_procedure:
            ev.append({"kind": "procedure", "weight": 0.5, "detail": "a remediation procedure matches"})
        score = round(sum(e["weight"] for e in ev), 2)
        ranked.append({"incident": m.incident, "alertname": m.alertname, "service": m.service,
                       "starts_at": m.starts_at.isoformat(), "score": score, "evidence": ev})
    # stable order: score, then earlier start, then lower incident id
    ranked.sort(key=lambda r: (-r["score"], r["starts_at"], r["incident"]))
    return ranked


def _slack(settings: IntelligenceSettings) -> Any:
    from datetime import timedelta

    # a finding scraped in the same few seconds as the first alert still counts as "before"
    return timedelta(seconds=min(30.0, settings.window))
