"""Incidents and remediation: Prometheus stats from the remediator plus its incident store.

The SQL panels read the remediator's tables (docs/remediator.md) through the `$incidents_db`
PostgreSQL datasource. Only Grafana's standard macros are used ($__timeFilter,
$__timeGroupAlias), so the queries also run on any PostgreSQL replica of the store.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.models import dashboard as dash_m
from vigil.grafana.common import (
    assemble,
    bar_gauge,
    new_dashboard,
    prom,
    row,
    sql,
    stat,
    state_timeline,
    table,
    thresholds,
    timeseries,
    units,
    value_map,
)

__all__ = ["UID", "dashboard"]

UID = "vigil-incidents"

_ATTEMPTS = "vigil_remediation_attempts_total"


# --- Prometheus: the remediator's own metrics -------------------------------------------------

def open_incidents() -> Any:
    # Every replica reads the same store, so take the max rather than the sum.
    return stat(
        "Open incidents", "Incidents still needing work: open, awaiting approval or "
        "remediating.", units.Short, prom("max(vigil_incidents_open)", "open", instant=True),
        steps=thresholds((None, "green"), (1, "orange"), (5, "red")), w=4, h=5)


def in_progress() -> Any:
    return stat(
        "Remediations running", "Procedures running now, summed over replicas.", units.Short,
        prom("sum(vigil_remediations_in_progress)", "running", instant=True),
        steps=thresholds((None, "green"), (1, "blue")), w=4, h=5)


def mttr() -> Any:
    expr = ("sum(increase(vigil_incident_resolution_seconds_sum[$__range])) / "
            "sum(increase(vigil_incident_resolution_seconds_count[$__range]))")
    return stat(
        "MTTR", "Mean time from the alert's start to resolution over the dashboard's range, "
        "from the vigil_incident_resolution_seconds histogram.", units.Seconds,
        prom(expr, "MTTR", instant=True),
        steps=thresholds((None, "green"), (300, "orange"), (1800, "red")), w=4, h=5)


def auto_resolved_share() -> Any:
    expr = (f'sum(increase({_ATTEMPTS}{{result="succeeded"}}[$__range])) / '
            f'sum(increase(vigil_alerts_received_total{{outcome="new"}}[$__range]))')
    return stat(
        "Auto-resolved share", "Successful remediations per new alert over the range, from "
        "the remediator's counters (the incident store's exact figure is in the SQL stat).",
        units.PercentUnit, prom(expr, "auto-resolved", instant=True),
        steps=thresholds((None, "red"), (0.5, "orange"), (0.8, "green")), w=4, h=5)


def auto_resolved_share_sql() -> Any:
    query = """
        SELECT
          COALESCE(
            count(*) FILTER (WHERE i.state = 'resolved' AND EXISTS (
              SELECT 1 FROM attempts a WHERE a.incident_id = i.id AND a.state = 'succeeded'))
            ::double precision / NULLIF(count(*) FILTER (
              WHERE i.state IN ('resolved', 'failed', 'escalated')), 0),
            0) AS "auto-resolved"
        FROM incidents i
        WHERE $__timeFilter(i.opened_at)
    """
    return stat(
        "Auto-resolved share (store)", "Closed incidents that a verified procedure resolved, "
        "among all closed incidents opened in the range.", units.PercentUnit, sql(query),
        steps=thresholds((None, "red"), (0.5, "orange"), (0.8, "green")), w=4, h=5)


def kill_switch() -> Any:
    query = """
        SELECT CASE WHEN COALESCE(max(value), 'false') = 'true' THEN 1 ELSE 0 END AS paused
        FROM control_flags WHERE name = 'paused'
    """
    return stat(
        "Kill switch", "Paused: no procedure runs; incidents stay open.", units.NoUnit,
        sql(query), steps=thresholds((None, "green"), (1, "red")), w=4, h=5)


def mttr_quantiles() -> Any:
    bucket = "vigil_incident_resolution_seconds_bucket"
    return timeseries(
        "Time to resolve (quantiles)", "p50 and p90 of the incident resolution histogram.",
        units.Seconds,
        prom(f"histogram_quantile(0.5, sum by (le) (rate({bucket}[$__rate_interval])))", "p50",
             ref="A"),
        prom(f"histogram_quantile(0.9, sum by (le) (rate({bucket}[$__rate_interval])))", "p90",
             ref="B"),
        w=12, h=8)


def alerts_received() -> Any:
    return timeseries(
        "Alerts received", "Alerts per second by outcome: new, duplicate, resolved, unmatched.",
        units.OpsPerSecond,
        prom("sum by (outcome) (rate(vigil_alerts_received_total[$__rate_interval]))",
             "{{outcome}}"),
        w=12, h=8, stack=True)


def attempts_by_procedure() -> Any:
    return bar_gauge(
        "Attempts by procedure and result", "Procedure runs in the dashboard's range.",
        units.Short,
        prom(f"sum by (procedure, result) (increase({_ATTEMPTS}[$__range]))",
             "{{procedure}} {{result}}", instant=True),
        w=12, h=8)


def verification_failures() -> Any:
    return timeseries(
        "Verification failures and rollbacks",
        "Attempts whose fix did not hold: failed (escalated) and rolled back.",
        units.Short,
        prom(f'sum by (procedure, result) (increase({_ATTEMPTS}{{result=~"failed|rolled_back"}}'
             f'[$__rate_interval]))', "{{procedure}} {{result}}"),
        w=12, h=8, stack=True, min_val=0)


def remediation_duration() -> Any:
    bucket = "vigil_remediation_duration_seconds_bucket"
    return timeseries(
        "Remediation duration p90", "How long procedures take, per procedure.", units.Seconds,
        prom(f"histogram_quantile(0.9, sum by (le, procedure) (rate({bucket}[$__rate_interval])))",
             "{{procedure}}"),
        w=12, h=8)


def circuit_breakers() -> Any:
    return state_timeline(
        "Remediator circuit breakers", "0 closed, 1 open (calls short-circuited), 2 half-open.",
        prom("max by (breaker) (vigil_circuit_breaker_state)", "{{breaker}}"),
        mappings=value_map({"0": ("closed", "green"), "1": ("open", "red"),
                            "2": ("half-open", "orange")}),
        steps=thresholds((None, "green"), (1, "red")), w=24, h=6)


# --- SQL: the incident store ------------------------------------------------------------------

def incidents_by_state() -> Any:
    query = """
        SELECT $__timeGroupAlias(opened_at, '5m'), state AS metric, count(*) AS value
        FROM incidents
        WHERE $__timeFilter(opened_at)
        GROUP BY 1, 2
        ORDER BY 1
    """
    return timeseries(
        "Incidents opened, by current state", "From the incident store, per 5 minutes.",
        units.Short, sql(query, fmt="time_series"), w=12, h=8, stack=True)


def failed_verifications_sql() -> Any:
    query = """
        SELECT a.finished_at AS "time", i.id AS incident, a.procedure, a.state,
               a.verification, a.verification_detail AS detail
        FROM attempts a JOIN incidents i ON i.id = a.incident_id
        WHERE (a.verification = 'failed' OR a.state IN ('failed', 'rolled_back'))
          AND $__timeFilter(a.created_at)
        ORDER BY a.created_at DESC
        LIMIT 100
    """
    return table(
        "Failed verifications and rollbacks (store)", "What the verification query returned "
        "when a fix did not hold.", units.NoUnit, sql(query), w=12, h=8)


def incident_table() -> Any:
    query = """
        SELECT i.opened_at AS "time", i.id AS incident, i.alertname,
               COALESCE(i.procedure, '-') AS procedure, COALESCE(i.target, '-') AS target,
               i.state, i.dry_run,
               EXTRACT(EPOCH FROM (COALESCE(i.resolved_at, i.failed_at, i.escalated_at)
                                   - i.alert_starts_at)) AS time_to_close,
               (SELECT count(*) FROM attempts a WHERE a.incident_id = i.id) AS attempts,
               i.reason
        FROM incidents i
        WHERE $__timeFilter(i.opened_at)
        ORDER BY i.opened_at DESC
        LIMIT 200
    """
    return (table(
        "Incidents", "Every incident opened in the range, newest first.", units.NoUnit,
        sql(query), w=24, h=10)
        .override_by_name("time_to_close", [_unit(units.Seconds)]))


def incident_timeline() -> Any:
    # Every state change of every incident in the range, plus every attempt's start and end,
    # as one event list: the incident's history, read top to bottom.
    query = """
        SELECT ev.at AS "time", ev.incident, ev.alertname, ev.event, ev.detail
        FROM (
          SELECT i.id AS incident, i.alertname, e.at, e.event, e.detail
          FROM incidents i
          CROSS JOIN LATERAL (VALUES
            (i.alert_starts_at, 'alert started', ''),
            (i.opened_at, 'opened', COALESCE(i.procedure, 'no procedure')),
            (i.awaiting_approval_at, 'awaiting approval', ''),
            (i.approved_at, 'approved', COALESCE(i.approved_by, '')),
            (i.remediating_at, 'remediating', ''),
            (i.resolved_at, 'resolved', i.reason),
            (i.failed_at, 'failed', i.reason),
            (i.escalated_at, 'escalated', i.reason),
            (i.alert_resolved_at, 'alert resolved', '')
          ) AS e(at, event, detail)
          WHERE e.at IS NOT NULL AND $__timeFilter(i.opened_at)
          UNION ALL
          SELECT i.id, i.alertname, COALESCE(a.finished_at, a.started_at, a.created_at),
                 'attempt ' || a.state, a.procedure || ': ' || a.reason
          FROM attempts a JOIN incidents i ON i.id = a.incident_id
          WHERE $__timeFilter(i.opened_at)
        ) AS ev
        ORDER BY ev.at DESC, ev.incident DESC
        LIMIT 500
    """
    return table(
        "Incident timeline", "State changes and attempts of the incidents opened in the range, "
        "newest first.", units.NoUnit, sql(query), w=24, h=12)


def incident_groups() -> Any:
    # Correlation groups of the incident intelligence (docs/incidents.md): the ranked root
    # cause of each group and how many incidents it explains.
    query = """
        SELECT g.opened_at AS "time", g.id AS "group",
               COALESCE(g.root_alertname, '-') AS root_cause, g.root_incident_id AS root_incident,
               (SELECT count(*) FROM incident_intel i WHERE i.group_id = g.id) AS incidents,
               g.services::text AS services, g.ranked_at
        FROM incident_groups g
        WHERE $__timeFilter(g.opened_at)
        ORDER BY g.opened_at DESC
        LIMIT 100
    """
    return table(
        "Correlated incident groups", "Incidents grouped by the remediator's correlation, with "
        "the top-ranked root cause of each group (only the cause is remediated).",
        units.NoUnit, sql(query), w=12, h=8)


def _unit(unit: str) -> dash_m.DynamicConfigValue:
    return dash_m.DynamicConfigValue(id_val="unit", value=unit)


def dashboard() -> dict[str, Any]:
    """Build the incidents and remediation dashboard."""
    board = new_dashboard(
        "Vigil / Incidents and remediation", UID,
        "What the remediator received, what it ran and whether the fixes held, with every "
        "incident's history from the incident store.", with_incident_db=True)
    return assemble(board, [
        row("Now"), open_incidents(), in_progress(), mttr(), auto_resolved_share(),
        auto_resolved_share_sql(), kill_switch(),
        row("Remediation"), attempts_by_procedure(), verification_failures(),
        mttr_quantiles(), remediation_duration(), alerts_received(), incidents_by_state(),
        circuit_breakers(),
        row("Incident store"), incident_table(), incident_timeline(), failed_verifications_sql(),
        incident_groups(),
    ])
