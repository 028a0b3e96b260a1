"""Configuration and schema: the exporter's checks, findings, CORS matrix, env, schema and TLS."""

from __future__ import annotations

from typing import Any

from vigil.grafana.common import (
    TARGET_LABEL,
    assemble,
    bar_gauge,
    new_dashboard,
    prom,
    row,
    stat,
    state_timeline,
    table,
    thresholds,
    timeseries,
    transformation,
    units,
    value_map,
)

__all__ = ["UID", "dashboard"]

UID = "vigil-config-schema"

_OK_BAD = value_map({"0": ("no", "red"), "1": ("yes", "green")})


def config_score() -> Any:
    return stat(
        "Config score", "Weighted share of passing checks, 0-100 (see docs/exporter.md).",
        units.NoUnit, prom(f"vigil_config_score{{{TARGET_LABEL}}}", "score", instant=True),
        steps=thresholds((None, "red"), (70, "orange"), (90, "green")), w=6, h=6, decimals=0)


def findings_by_severity() -> Any:
    return stat(
        "Findings by severity", "Active findings of every check, per severity.", units.Short,
        prom(f"sum by (severity) (vigil_findings{{{TARGET_LABEL}}})", "{{severity}}",
             instant=True),
        steps=thresholds((None, "green"), (1, "orange")), w=10, h=6)


def schema_status() -> Any:
    return stat(
        "Schema", "Consistent: the live schema passes every consistency rule. Drift: its "
        "fingerprint differs from the recorded baseline.", units.NoUnit,
        prom(f"vigil_schema_consistent{{{TARGET_LABEL}}}", "consistent", instant=True, ref="A"),
        prom(f"1 - vigil_schema_drift{{{TARGET_LABEL}}}", "no drift", instant=True, ref="B"),
        steps=thresholds((None, "red"), (1, "green")), w=8, h=6)


def config_score_history() -> Any:
    return timeseries(
        "Config score over time", "A drop points at the change that broke a check.",
        units.NoUnit, prom(f"vigil_config_score{{{TARGET_LABEL}}}", "{{target}}"), w=12, h=8,
        min_val=0)


def findings_by_check() -> Any:
    return bar_gauge(
        "Findings by check", "Which checks report findings now.", units.Short,
        prom(f"sum by (check, severity) (vigil_findings{{{TARGET_LABEL}}})",
             "{{check}} {{severity}}", instant=True),
        steps=thresholds((None, "green"), (1, "orange"), (5, "red")), w=12, h=8)


def cors_matrix() -> Any:
    return table(
        "CORS preflight matrix (origin x method)",
        "1: the target's preflight allows the method for the origin; 0: blocked.",
        units.NoUnit,
        prom(f"max by (origin, method) (vigil_cors_preflight_allowed{{{TARGET_LABEL}}})",
             instant=True, table_format=True),
        transformations=[transformation("groupingToMatrix", {
            "columnField": "method", "rowField": "origin", "valueField": "Value",
        })],
        w=24, h=8)


def env_validity() -> Any:
    return state_timeline(
        "Environment variables valid", "Each required variable is present, well-typed and "
        "not a placeholder (values are never exported).",
        prom(f"vigil_env_valid{{{TARGET_LABEL}}}", "{{variable}}"),
        mappings=_OK_BAD, steps=thresholds((None, "red"), (1, "green")), w=12, h=8)


def schema_history() -> Any:
    return state_timeline(
        "Schema consistency and drift over time", "When the schema broke or drifted.",
        prom(f"vigil_schema_consistent{{{TARGET_LABEL}}}", "consistent", ref="A"),
        prom(f"1 - vigil_schema_drift{{{TARGET_LABEL}}}", "matches baseline", ref="B"),
        mappings=_OK_BAD, steps=thresholds((None, "red"), (1, "green")), w=12, h=8)


def missing_tables() -> Any:
    return table(
        "Tables referenced in code but missing",
        "Table names found in the target's code that the live schema does not have.",
        units.NoUnit,
        prom(f'vigil_finding_info{{{TARGET_LABEL},check="code_references",rule="unknown_table"}}',
             instant=True, table_format=True),
        transformations=[transformation("organize", {
            "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True,
                              "instance": True},
            "renameByName": {"subject": "table"},
        })],
        w=12, h=8)


def tls_time_left() -> Any:
    return bar_gauge(
        "TLS certificate time left", "Time until each HTTPS host's certificate expires "
        "(negative once expired); orange under 30 days, red under 14.", units.Seconds,
        prom(f"vigil_tls_cert_remaining_seconds{{{TARGET_LABEL}}}", "{{host}}", instant=True),
        steps=thresholds((None, "red"), (14 * 86400, "orange"), (30 * 86400, "green")),
        w=12, h=8)


def endpoints_up() -> Any:
    return state_timeline(
        "Endpoints up", "Each configured endpoint answered as expected.",
        prom(f"vigil_endpoint_up{{{TARGET_LABEL}}}", "{{endpoint}}"),
        mappings=value_map({"0": ("down", "red"), "1": ("up", "green")}),
        steps=thresholds((None, "red"), (1, "green")), w=12, h=8)


def endpoint_latency() -> Any:
    return timeseries(
        "Endpoint latency", "Response time of each configured endpoint probe.", units.Seconds,
        prom(f"vigil_endpoint_latency_seconds{{{TARGET_LABEL}}}", "{{endpoint}}"), w=12, h=8)


def active_findings() -> Any:
    return table(
        "Active findings", "Every active finding (capped per check), most severe first.",
        units.NoUnit,
        prom(f"vigil_finding_info{{{TARGET_LABEL}}}", instant=True, table_format=True),
        transformations=[transformation("organize", {
            "excludeByName": {"Time": True, "Value": True, "__name__": True, "job": True,
                              "instance": True},
            "indexByName": {"severity": 0, "check": 1, "rule": 2, "subject": 3, "target": 4},
        })],
        sort_by=("severity", False), w=24, h=10)


def check_success() -> Any:
    return state_timeline(
        "Check ran to completion", "0 means the check could not run (timeout, connection "
        "refused); its finding says why.",
        prom(f"vigil_check_success{{{TARGET_LABEL}}}", "{{check}}"),
        mappings=value_map({"0": ("failed", "red"), "1": ("ok", "green")}),
        steps=thresholds((None, "red"), (1, "green")), w=12, h=8)


def check_duration() -> Any:
    return timeseries(
        "Check duration", "Run time of each check; a check slower than its min_interval is "
        "served from cache.", units.Seconds,
        prom(f"vigil_check_duration_seconds{{{TARGET_LABEL}}}", "{{check}}"), w=12, h=8)


def check_age() -> Any:
    return bar_gauge(
        "Check result age", "Seconds since each check last ran.", units.Seconds,
        prom(f"time() - vigil_check_last_run_timestamp_seconds{{{TARGET_LABEL}}}", "{{check}}",
             instant=True),
        steps=thresholds((None, "green"), (300, "orange"), (900, "red")), w=24, h=6)


def dashboard() -> dict[str, Any]:
    """Build the configuration and schema dashboard."""
    board = new_dashboard(
        "Vigil / Configuration and schema", UID,
        "What the exporter's checks find in the target's configuration, CORS policy, "
        "environment, database schema and TLS, and whether the checks themselves run.")
    return assemble(board, [
        row("Summary"), config_score(), findings_by_severity(), schema_status(),
        config_score_history(), findings_by_check(),
        row("CORS"), cors_matrix(),
        row("Environment and schema"), env_validity(), schema_history(), missing_tables(),
        tls_time_left(),
        row("Endpoints"), endpoints_up(), endpoint_latency(),
        row("Findings"), active_findings(),
        row("Checks"), check_success(), check_duration(), check_age(),
    ])
