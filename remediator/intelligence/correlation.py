"""Correlation: which open incident group a new alert joins (pure logic, no I/O).

An alert joins a group when it started within `window` of the group's latest alert and is
connected to it: the same service, a service on the other end of a declared dependency
(either direction, transitively), or a shared value of one of the `shared_labels`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from vigil.remediator.config import IntelligenceSettings

__all__ = ["GroupView", "dependency_closure", "pick_group", "service_of", "shared_values"]


def service_of(labels: Mapping[str, str], settings: IntelligenceSettings) -> str:
    """The service an alert is about: the first of `service_labels` it carries, else ""."""
    for name in settings.service_labels:
        value = labels.get(name, "")
        if value:
            return str(value)
    return ""


def shared_values(labels: Mapping[str, str], settings: IntelligenceSettings) -> dict[str, list[str]]:
    return {name: [str(labels[name])] for name in settings.shared_labels if labels.get(name)}


def dependency_closure(deps: Mapping[str, Iterable[str]], service: str) -> set[str]:
    """Every service `service` calls or uses, directly or through others."""
    seen: set[str] = set()
    todo = list(deps.get(service, ()))
    while todo:
        s = todo.pop()
        if s in seen or s == service:
            continue
        seen.add(s)
        todo.extend(deps.get(s, ()))
    return seen


def connected(a: str, b: str, deps: Mapping[str, Iterable[str]]) -> bool:
    if not a or not b:
        return False
    return a == b or b in dependency_closure(deps, a) or a in dependency_closure(deps, b)


@dataclass
class GroupView:
    id: int
    last_alert_at: datetime
    services: list[str]
    shared: dict[str, list[str]] = field(default_factory=dict)


def pick_group(groups: Iterable[GroupView], starts_at: datetime, service: str,
               shared: Mapping[str, list[str]], settings: IntelligenceSettings) -> int | None:
    """The group this alert joins (the most recently active connected one), or None."""
    best: GroupView | None = None
    for g in groups:
        if abs((starts_at - g.last_alert_at).total_seconds()) > settings.window:
            continue
        linked = any(connected(service, s, settings.dependencies) for s in g.services)
        if not linked:
            linked = any(set(values) & set(g.shared.get(name, [])) for name, values in shared.items())
        if linked and (best is None or g.last_alert_at > best.last_alert_at):
            best = g
    return best.id if best else None
