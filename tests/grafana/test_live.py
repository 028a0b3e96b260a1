"""Every Prometheus panel query returns data on the live demo stack once a fault has run.

The stack is `vigil demo`'s own (vigil.demo.stack.Stack): the demo target, every Vigil
service present in the tree, Alertmanager with the routing and Prometheus with the rules, on
loopback with a 1 s scrape interval and the rules' windows compressed 60x. Grafana's variables
are filled in the way Grafana would for a 5-minute dashboard range.

Queries that cannot return data on a few minutes of demo history are listed in KNOWN_GAPS
(and, for forecasts whose min_history is too long for a test run, computed from
deploy/forecasts.yml), each with its reason; everything else must return at least one series.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
import vigil.demo.stack as stack_module
from vigil.forecaster.config import load_config
from vigil.grafana.render import PanelQuery, iter_queries, render_all

from tests.grafana.catalogue import expand_promql
from tests.harness import require_binary
from vigil.paths import DEPLOY_DIR

pytestmark = pytest.mark.integration

# (dashboard uid, panel title, ref id) -> why that query has no data on a short demo run.
_BAND = "the anomaly rules record the band only after one day of history (24 min at the " \
        "demo's 60x time scale), the seasonal prediction after weeks"
KNOWN_GAPS: dict[tuple[str, str, str], str] = {
    ("vigil-predictions", "Request rate against its z-score band", "B"): _BAND,
    ("vigil-predictions", "Request rate against its z-score band", "C"): _BAND,
    ("vigil-predictions", "Request rate against its z-score band", "D"): _BAND,
    ("vigil-config-schema", "TLS certificate time left", "A"):
        "the demo target serves plain HTTP, so there is no certificate to measure",
    ("vigil-config-schema", "Tables referenced in code but missing", "A"):
        "the demo's code references only tables that exist, so there is no unknown_table "
        "finding (the panel is empty by design when all is well)",
    ("vigil-incidents", "Verification failures and rollbacks", "A"):
        "the demo's procedures fix the injected faults: no attempt fails or rolls back",
}

TIME_SCALE = 60.0
# A forecast gets its first fit once it has min_history of samples; `vigil demo` divides
# min_history by the time scale. Those needing more than this much of a test run are gaps.
FORECAST_WAIT_SECONDS = 60.0


def _forecast_gaps() -> dict[tuple[str, str, str], str]:
    gaps = {}
    for forecast in load_config(DEPLOY_DIR / "forecasts.yml").forecasts:
        wait = forecast.min_history / TIME_SCALE
        if wait > FORECAST_WAIT_SECONDS:
            reason = (f"the {forecast.name} forecast needs {forecast.min_history:.0f}s of history "
                      f"before its first fit ({wait:.0f}s at the demo's time scale)")
            for ref in ("B", "C", "D"):
                gaps[("vigil-predictions", f"{forecast.name}: actual against forecast", ref)] = (
                    reason)
    return gaps


# Metric prefixes of each Vigil service. `vigil demo` starts a service only when its code and
# its deploy/ config exist; a service it could not start must be listed in SERVICE_GAPS.
SERVICE_METRICS = {
    "vigil-exporter": ("vigil_check", "vigil_config_score", "vigil_finding", "vigil_cors",
                       "vigil_env", "vigil_schema", "vigil_endpoint", "vigil_build_info",
                       "vigil_tls"),
    "vigil-forecaster": ("vigil_forecast",),
    "vigil-remediator": ("vigil_webhook", "vigil_alerts_received", "vigil_remediation",
                         "vigil_incident", "vigil_circuit"),
}
SERVICE_GAPS: dict[str, str] = {}

RATE_INTERVAL = "10s"  # Grafana: max(4 x scrape interval, step); the stack scrapes every 1 s
DASHBOARD_RANGE = "5m"
DEADLINE_SECONDS = 120.0


def _queries() -> list[PanelQuery]:
    return [q for text in render_all().values() for q in iter_queries(json.loads(text))
            if q.kind == "promql"]


def _key(query: PanelQuery) -> tuple[str, str, str]:
    return (query.dashboard_uid, query.panel_title, query.ref_id)


def _service_of(query: PanelQuery) -> str | None:
    for job, prefixes in SERVICE_METRICS.items():
        if any(p in query.text for p in prefixes):
            return job
    return None


def _has_data(prometheus: str, query: PanelQuery) -> bool:
    expr = expand_promql(query.text, target="demo", rate_interval=RATE_INTERVAL,
                         range_=DASHBOARD_RANGE)
    resp = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", (query.panel_title, body)
    return bool(body["data"]["result"])


def test_every_prometheus_panel_query_returns_data(tmp_path: Path) -> None:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    # Never take the default ports: other tests and a developer's own stack may hold them.
    stack = stack_module.Stack(tmp_path / "stack", time_scale=TIME_SCALE, prefer_default_ports=False)
    try:
        stack.start(log=lambda message: None)
        assert stack.target is not None
        prometheus = stack.url("prometheus")
        # A fault mix that exercises every panel: 5xx answers (error ratio, SLO burn, alerts),
        # slow answers (latency), memory growth (predict_linear, the restart procedure).
        stack.target.inject(error_rate=0.3, latency_seconds=0.05,
                            memory_growth_bytes_per_second=4_000_000)
        not_started = set(stack.skipped) - set(SERVICE_GAPS)
        gaps = {**KNOWN_GAPS, **_forecast_gaps()}
        pending = {q for q in _queries() if _key(q) not in gaps
                   and _service_of(q) not in stack.skipped}
        deadline = time.monotonic() + DEADLINE_SECONDS
        while pending and time.monotonic() < deadline:
            pending = {q for q in pending if not _has_data(prometheus, q)}
            if pending:
                time.sleep(2)
        assert not pending, "panels without data after the fault:\n" + "\n".join(
            sorted(f"  {q.dashboard_uid} / {q.panel_title} [{q.ref_id}]: {q.text}"
                   for q in pending))
        assert not not_started, f"vigil demo did not start {sorted(not_started)}"
    finally:
        stack.stop()


def test_known_gaps_name_real_panels() -> None:
    panels = {_key(q) for q in _queries()}
    gaps = {**KNOWN_GAPS, **_forecast_gaps()}
    assert set(gaps) <= panels, set(gaps) - panels
    # the short-history forecasts are checked, not excused
    assert ("vigil-predictions", "memory: actual against forecast", "B") not in gaps
