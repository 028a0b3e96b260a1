"""The remediator's metrics, exactly as DESIGN.md names them, on a passed-in registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["RemediatorMetrics"]


DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
RESOLUTION_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 43200, 86400)


class _IncidentsOpen(Collector):
    """vigil_incidents_open: the store's count, refreshed after each commit and each sweep.

    The count comes from the shared store, so every replica reports the same number; it is
    read off the event loop and cached, so a scrape never waits on the database.
    """

    def __init__(self, count: Callable[[], int | None]) -> None:
        self._count = count

    def collect(self) -> Iterable[GaugeMetricFamily]:
        value = self._count()
        if value is None:  # not read yet, or the store has never answered
            return
        yield GaugeMetricFamily(
            "vigil_incidents_open",
            "Incidents in state open, awaiting_approval or remediating (from the incident "
            "store, refreshed after every commit and every few seconds).",
            value=float(value))


class RemediatorMetrics:
    def __init__(self, registry: CollectorRegistry, count_open: Callable[[], int | None]) -> None:
        self.notifications = Counter(
            "vigil_webhook_notifications_total",
            "Webhook notifications by result (accepted, invalid, unauthorized, store_error).",
            ["result"], registry=registry)
        self.alerts = Counter(
            "vigil_alerts_received_total",
            "Alerts received by outcome (new, duplicate, resolved, unmatched).",
            ["outcome"], registry=registry)
        self.attempts = Counter(
            "vigil_remediation_attempts_total",
            "Remediation attempts by procedure and result "
            "(succeeded, failed, rolled_back, skipped, dry_run).",
            ["procedure", "result"], registry=registry)
        self.duration = Histogram(
            "vigil_remediation_duration_seconds", "Run time of a remediation attempt.",
            ["procedure"], buckets=DURATION_BUCKETS, registry=registry)
        self.in_progress = Gauge(
            "vigil_remediations_in_progress", "Remediation attempts running in this replica.",
            registry=registry)
        self.resolution = Histogram(
            "vigil_incident_resolution_seconds",
            "Seconds from the alert's startsAt to the incident's resolution (MTTR).",
            buckets=RESOLUTION_BUCKETS, registry=registry)
        self.breaker = Gauge(
            "vigil_circuit_breaker_state",
            "State of the remediator's per-host circuit breakers: 0 closed, 1 open, 2 half-open.",
            ["breaker"], registry=registry)
        self.escalation_failures = Counter(
            "vigil_remediation_escalation_failures_total",
            "Escalations not delivered, by reason: credentials (the token file cannot be "
            "read or is empty: nothing was sent), http_status (a non-2xx answer), "
            "unreachable (connection error or timeout).",
            ["reason"], registry=registry)
        self.stuck = Gauge(
            "vigil_remediation_stuck_incidents",
            "Incidents of a procedure in a non-terminal state longer than its time bound: "
            "remediating longer than time_bound, or open longer than time_bound plus the "
            "cooldown (from the incident store, refreshed every sweep; the same on every replica).",
            ["procedure"], registry=registry)
        self.blast_held = Counter(
            "vigil_remediation_blast_radius_held_total",
            "Incidents escalated instead of run because their procedure's blast radius "
            "(max_targets at once, max_per_hour) was reached.",
            ["procedure"], registry=registry)
        for reason in ("credentials", "http_status", "unreachable"):
            self.escalation_failures.labels(reason)
        for result in ("accepted", "invalid", "unauthorized", "store_error"):
            self.notifications.labels(result)
        for outcome in ("new", "duplicate", "resolved", "unmatched"):
            self.alerts.labels(outcome)
        registry.register(_IncidentsOpen(count_open))
