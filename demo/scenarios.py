"""`vigil scenarios`: fault scenarios on the whole real loop, measured from the real components.

Each scenario injects one fault into the demo target (or its config, secrets or database),
declares the ground-truth failure moment (when users would be hurt) and what should happen
(auto-remediation, escalation to a human, or detection only), then watches. Every measured
timestamp comes from a real component: the Prometheus `ALERTS` series, what Alertmanager
delivered to the human receivers, and the remediator's incident rows. See docs/scenarios.md.
"""

from __future__ import annotations

import math
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, Protocol

import requests
from vigil.demo.stack import Stack, stop_on_sigterm

from vigil.service import ArgumentParser

__all__ = ["SCENARIOS", "Scenario", "ScenarioResult", "main", "run_scenario"]

MiB = 1024 * 1024
# Alerts about Vigil's own plumbing are not consequences of a target fault; they are
# counted like any other alert (a false positive when they fire with no fault behind them).
# ConfigScoreDropping is related wherever the fault fails or slows the endpoints the
# exporter probes (deploy/exporter.yml): the probes' findings lower the score.


class LoopStack(Protocol):
    """What the runner needs of a stack: the demo's (demo/stack.py) or the reference one
    (demo/reference.py)."""

    workdir: Path

    def url(self, name: str) -> str: ...

    def query(self, expr: str) -> list[dict[str, Any]]: ...

    def start(self, log: Callable[[str], None] = ...) -> None: ...

    def stop(self) -> None: ...


@dataclass
class Context:
    """What a scenario's hooks can reach."""

    stack: LoopStack
    t0: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def target(self) -> Any:
        target = getattr(self.stack, "target", None)
        assert target is not None, "this stack has no demo target"
        return target

    def metric(self, name: str) -> float:
        value = self.target.metric(name)
        return float(value) if value is not None else 0.0


@dataclass(frozen=True)
class Scenario:
    """One fault, its ground truth, and the outcome Vigil should reach."""

    name: str
    summary: str
    kind: str  # resource | error | config | control
    inject: Callable[[Context], None]
    failure_moment: Callable[[Context], float | None]  # epoch seconds, None when no user harm
    root_cause: str  # the alert that names the true cause
    related: str  # regex of alert names that legitimately follow from this fault
    expect: str  # auto | escalate | detect | none
    duration: float  # seconds to watch at most
    recover: Callable[[Context], None] | None = None  # e.g. a downstream that heals later
    recover_after: float = 0.0
    primary_metric: str = ""  # PromQL drawn in the timeline
    forecast: str = ""  # the forecaster's forecast of that metric, drawn as a band
    undo: Callable[[Context], None] | None = None  # default: undo() of the demo target
    stack: str = "demo"  # the stack it runs on: demo | reference (demo/reference.py)


def _growth(fault: str, used: str | None, capacity: str, rate: float) -> Callable[[Context], None]:
    """Inject a steady growth fault, noting the headroom it eats into (all of the capacity
    when `used` is None: a leak that starts from nothing held)."""

    def inject(ctx: Context) -> None:
        ctx.notes.update(used0=ctx.metric(used) if used else 0.0, capacity=ctx.metric(capacity),
                         rate=rate)
        ctx.target.inject(**{fault: rate})

    return inject


def _exhaustion(ctx: Context) -> float:
    """When the growth fills its capacity: headroom at injection divided by the rate."""
    return ctx.t0 + (ctx.notes["capacity"] - ctx.notes["used0"]) / ctx.notes["rate"]


LATENCY_OBJECTIVE = 0.5  # seconds of p99, the threshold of TargetLatencyDegraded (rules/)
P99 = 'job_quantile:http_request_duration_seconds:histogram_quantile_5m{job="demo",quantile="0.99"}'


def _latency_creep(rate: float) -> Callable[[Context], None]:
    """Inject a latency that grows `rate` seconds per second, noting the p99 it starts from."""

    def inject(ctx: Context) -> None:
        now = ctx.stack.query(P99)
        p99 = float(now[0]["value"][1]) if now else 0.0
        ctx.notes.update(p99_0=p99 if math.isfinite(p99) else 0.0, rate=rate)
        ctx.target.inject(latency_growth_seconds_per_second=rate)

    return inject


def _objective_breached(ctx: Context) -> float:
    """When the added latency lifts the p99 over the objective."""
    return ctx.t0 + max(0.0, LATENCY_OBJECTIVE - ctx.notes["p99_0"]) / ctx.notes["rate"]


def _now(ctx: Context) -> float:
    return ctx.t0


def _never(ctx: Context) -> None:
    return None


def _write_secret(value: str) -> Callable[[Context], None]:
    def inject(ctx: Context) -> None:
        path = ctx.stack.workdir / "secrets" / "demo-api-key"
        ctx.notes["secret_backup"] = path.read_text()
        path.write_text(value)
    return inject


def _rename_table(ctx: Context) -> None:
    db = ctx.target.state_dir / "demo.db"
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE orders RENAME TO orders_archive")
    ctx.notes["renamed"] = True


def _corrupt_baseline_then_drift(ctx: Context) -> None:
    """The baseline on disk is itself wrong: restoring it cannot fix the drift."""
    ctx.target.inject(cors_drift=True)
    live = ctx.target.state_dir / "config.yaml"
    baseline = ctx.target.state_dir / "config.baseline.yaml"
    ctx.notes["baseline_backup"] = baseline.read_text()
    baseline.write_text(live.read_text())


# The control run goes first (with --sequential; by default it runs on a second stack beside
# the faults), and the faults that burn error budget go last: with time compressed 60x, the
# slow SLO windows (6 h -> 6 min) keep the consequences of an earlier fault firing long after
# it is undone, and each reset waits for the alerts to clear.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("control", "seasonal load and no fault: every alert is a false positive",
             "control", lambda c: None, _never, "", r"(?!)", "none", 600,
             primary_metric='sum(rate(http_requests_total{job="demo"}[10s]))'),
    Scenario("memory_leak", "memory grows 8 MiB/s towards the 512 MiB limit; predicted, then restarted",
             "resource", _growth("memory_growth_bytes_per_second", "process_resident_memory_bytes",
                                 "demo_memory_limit_bytes", 8 * MiB), _exhaustion, "TargetMemoryExhaustionPredicted",
             r"TargetMemoryExhaustionPredicted|ForecastThresholdBreachPredicted|ForecastAnomalySustained",
             "auto", 90, primary_metric='process_resident_memory_bytes{job="demo"}', forecast="memory"),
    Scenario("disk_growth", "spool grows 4 MiB/s towards the 256 MiB volume; predicted, then cleaned",
             "resource", _growth("disk_growth_bytes_per_second", "demo_disk_usage_bytes",
                                 "demo_disk_capacity_bytes", 4 * MiB), _exhaustion, "TargetDiskFillPredicted",
             r"TargetDiskFillPredicted|ForecastThresholdBreachPredicted|ForecastAnomalySustained",
             "auto", 90, primary_metric='demo_disk_usage_bytes{job="demo"}', forecast="disk"),
    Scenario("pool_exhaustion", "a connection leak keeps one DB pool connection every 10 s until "
             "the pool is full; predicted, then restarted",
             "resource", _growth("pool_leak_connections_per_second", None, "demo_db_pool_size", 0.1), _exhaustion,
             "TargetDbPoolExhaustionPredicted",
             r"TargetDbPoolExhaustionPredicted|TargetDbPoolExhausted|TargetErrorRateHigh|ErrorBudget.*|"
             r"VigilCheckFailing|TargetTrafficAnomaly|ConfigScoreDropping",
             "auto", 90, primary_metric='demo_db_pool_connections_in_use{job="demo"}'),
    Scenario("latency_degradation", "every API request gets 10 ms slower each second, towards the "
             "500 ms objective; predicted and escalated",
             "error", _latency_creep(0.01), _objective_breached, "TargetLatencyDegradationPredicted",
             r"TargetLatencyDegradationPredicted|TargetLatencyDegraded|ErrorBudget.*|Forecast.*|"
             r"TargetTrafficAnomaly|VigilCheckFailing|ConfigScoreDropping",
             "escalate", 90,
             primary_metric='histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="demo"}[10s])))'),
    Scenario("cors_drift", "PATCH drops out of the allowed CORS methods; config restored",
             "config", lambda c: c.target.inject(cors_drift=True), _now, "TargetConfigDrift",
             r"CorsMethodBlocked|TargetConfigDrift|ConfigScoreDropping", "auto", 60,
             primary_metric='min(vigil_cors_preflight_allowed{method="PATCH"})'),
    Scenario("secret_placeholder", "the API key secret becomes a placeholder; detected and escalated",
             "config", _write_secret("changeme"), _never, "SecretPlaceholder",
             r"SecretPlaceholder|EnvInvalid|ConfigScoreDropping", "escalate", 60,
             primary_metric="min(vigil_env_valid)"),
    Scenario("verification_fails", "config drift whose baseline is also wrong; restore fails, rolled back and escalated",
             "config", _corrupt_baseline_then_drift, _now, "TargetConfigDrift",
             r"TargetConfigDrift|CorsMethodBlocked|ConfigScoreDropping|VigilRemediationFailed",
             "escalate", 180, primary_metric='demo_config_drift{job="demo"}'),
    Scenario("schema_drift", "table orders renamed while code still queries it; detected",
             "config", _rename_table, _now, "CodeReferencesMissingTable",
             r"CodeReferencesMissingTable|SchemaInconsistent|SchemaDrift|ConfigScoreDropping|"
             r"TargetErrorRateHigh|ErrorBudget.*",
             "escalate", 60, primary_metric="min(vigil_schema_consistent)"),
    Scenario("downstream_error_storm", "the pricing dependency fails; the breaker opens, then recovers",
             "error", lambda c: c.target.inject(downstream_errors=True), _now, "TargetDownstreamErrors",
             r"TargetDownstreamErrors|TargetErrorRateHigh|ErrorBudget.*|ForecastAnomalySustained|"
             r"TargetTrafficAnomaly|ConfigScoreDropping",
             "auto", 90, recover=lambda c: c.target.inject(downstream_errors=False), recover_after=20,
             primary_metric='sum(rate(demo_downstream_requests_total{job="demo",result="error"}[5s]))'),
    Scenario("no_procedure", "half of all requests fail; no procedure matches, so a human is paged",
             "error", lambda c: c.target.inject(error_rate=0.5), _now, "TargetErrorRateHigh",
             r"TargetErrorRateHigh|ErrorBudget.*|VigilCheckFailing|Forecast.*|TargetTrafficAnomaly|"
             r"ConfigScoreDropping",
             "escalate", 60,
             primary_metric='sum(rate(http_requests_total{job="demo",status=~"5.."}[5s]))'),
)


@dataclass
class ScenarioResult:
    """What the real components recorded during one scenario."""

    name: str
    kind: str
    expect: str
    root_cause: str
    t0: float
    end: float
    failure_moment: float | None
    alerts: dict[str, dict[str, float]]  # alertname -> {"first": ts, "last": ts}, new in window
    false_positive_alerts: list[str]
    carried_over_alerts: list[str]  # already firing at injection: an earlier fault's tail
    detection_seconds: float | None
    predicted: bool | None  # None when there is no failure moment to predict
    lead_seconds: float | None
    remediation_start_seconds: float | None
    recovery_seconds: float | None
    outcome: str  # auto_resolved | mitigated | escalated | detected | missed | quiet | false_alarm
    root_cause_detected: bool
    root_cause_ranked_first: str | None  # what the remediator's ranking puts first
    incidents: list[dict[str, Any]]
    human_deliveries: list[str]
    series: list[tuple[float, float]] = field(default_factory=list)
    forecast: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    stack: str = "demo"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _query_range(stack: LoopStack, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    params: dict[str, str | float] = {"query": expr, "start": start, "end": end, "step": "1s"}
    resp = requests.get(f"{stack.url('prometheus')}/api/v1/query_range", timeout=10,
                        params=params)
    resp.raise_for_status()
    return list(resp.json()["data"]["result"])


def firing_alerts(stack: LoopStack, start: float, end: float,
                  labels: dict[str, dict[str, str]] | None = None) -> dict[str, dict[str, float]]:
    """First and last firing time of each alert name, from Prometheus' ALERTS series
    (and, into `labels`, the labels of each name's earliest series)."""
    out: dict[str, dict[str, float]] = {}
    for series in _query_range(stack, 'ALERTS{alertstate="firing"}', start, end):
        name = series["metric"]["alertname"]
        times = [float(t) for t, _ in series["values"]]
        entry = out.setdefault(name, {"first": min(times), "last": max(times)})
        if labels is not None and min(times) <= entry["first"]:
            labels[name] = {k: v for k, v in series["metric"].items()
                            if k not in ("__name__", "alertstate")}
        entry["first"] = min(entry["first"], min(times))
        entry["last"] = max(entry["last"], max(times))
    return out


def ranked_root_cause(stack: LoopStack, alerts: dict[str, dict[str, float]],
                      labels: dict[str, dict[str, str]]) -> str | None:
    """The remediator's root-cause ranking applied to the run's new alerts (the same evidence
    and weights; read from Prometheus), including alerts that never reach the remediator."""
    from vigil.remediator.intelligence.offline import top_root_cause

    if not alerts:
        return None
    batch = [{"alertname": name, "starts_at": span["first"], "labels": labels.get(name, {})}
             for name, span in alerts.items()]
    procedures = [name for name in alerts if labels.get(name, {}).get("remediation") == "auto"]
    return top_root_cause(batch, prometheus_url=stack.url("prometheus"), procedures=procedures)


def _incidents(stack: LoopStack, since: float) -> list[dict[str, Any]]:
    """The remediator's incident rows opened since a time (its SQLite store in the demo)."""
    db = stack.workdir / "state" / "remediator.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        rows = conn.execute("SELECT * FROM incidents ORDER BY id").fetchall()
        attempts = conn.execute("SELECT incident_id, state, verification FROM attempts").fetchall()
    by_incident: dict[int, list[dict[str, Any]]] = {}
    for a in attempts:
        by_incident.setdefault(a["incident_id"], []).append(dict(a))
    out = []
    for row in rows:
        item = dict(row)
        opened = _ts(item.get("opened_at"))
        if opened is None or opened < since:
            continue
        for key in ("opened_at", "remediating_at", "resolved_at", "escalated_at", "failed_at",
                    "alert_starts_at", "alert_resolved_at"):
            item[key] = _ts(item.get(key))
        item["attempts"] = by_incident.get(item["id"], [])
        out.append({k: item[k] for k in ("id", "alertname", "procedure", "state", "reason",
                                        "opened_at", "remediating_at", "resolved_at",
                                        "escalated_at", "failed_at", "alert_starts_at", "attempts")
                    if k in item})
    return out


def _ts(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    from datetime import datetime

    text = str(value).replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def undo(stack: Stack, ctx: Context | None = None) -> None:
    """Undo every fault: restore what the scenario changed on disk, clear the runtime faults,
    restart the target, restore its config, close the breaker and clean the spool."""
    target = stack.target
    assert target is not None
    if ctx is not None:
        if "secret_backup" in ctx.notes:
            (stack.workdir / "secrets" / "demo-api-key").write_text(ctx.notes["secret_backup"])
        if "baseline_backup" in ctx.notes:
            (target.state_dir / "config.baseline.yaml").write_text(ctx.notes["baseline_backup"])
        if ctx.notes.get("renamed"):
            with sqlite3.connect(target.state_dir / "demo.db") as conn:
                conn.execute("ALTER TABLE orders_archive RENAME TO orders")
    target.clear()
    target.admin("POST", "/admin/restart")
    target.admin("POST", "/admin/config/restore")
    target.admin("POST", "/admin/circuit-breaker", {"state": "closed"})
    target.admin("POST", "/admin/disk/cleanup")


# The runner reads the ALERTS series from this long before the injection (an alert that the
# fault raises at once is then not missed), so settle() waits at least this long in quiet:
# an earlier alert inside the window would count as carried over.
LOOKBACK = 5.0


def settle(stack: LoopStack, timeout: float = 60.0) -> None:
    """Wait until no alert is pending or firing for LOOKBACK + 1 s (or `timeout` passes: what
    still fires then is reported by the next scenario as carried over)."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        if not stack.query("ALERTS"):
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= LOOKBACK + 1:
                return
        else:
            quiet_since = None
        time.sleep(1)


def _settled(scenario: Scenario, incidents: list[dict[str, Any]], alerts: dict[str, Any],
             now: float) -> bool:
    """Stop watching early once the expected outcome is final."""
    if scenario.expect == "auto":
        # resolved, and its attempt has its verdict (a run keeps verifying after its alert
        # resolved)
        return any(i["state"] == "resolved" and i["attempts"]
                   and all(a["state"] not in ("queued", "running") for a in i["attempts"])
                   for i in incidents if i["alertname"] == scenario.root_cause)
    if scenario.expect == "escalate":
        return any(i["state"] in ("escalated", "failed") for i in incidents) or (
            scenario.root_cause in alerts and now - alerts[scenario.root_cause]["first"] > 10)
    return False


def run_scenario(stack: LoopStack, scenario: Scenario, human: Any, *, duration: float | None = None,
                 log: Callable[[str], None] = print) -> ScenarioResult:
    """Inject one scenario's fault, watch the real loop, and measure it."""
    ctx = Context(stack)
    # the previous scenario undid its fault when it ended; wait for its alerts to clear
    # (a new stack starts clean)
    settle(stack)
    human_before = len(human.received)
    ctx.t0 = time.time()
    scenario.inject(ctx)
    failure = scenario.failure_moment(ctx)
    log(f"[{scenario.name}] fault injected at {time.strftime('%H:%M:%S', time.localtime(ctx.t0))}"
        + (f"; users hurt at +{failure - ctx.t0:.0f}s" if failure else ""))
    limit = duration if duration is not None else scenario.duration
    recovered = False
    seen: set[str] = set()
    while time.time() - ctx.t0 < limit:
        time.sleep(1)
        now = time.time()
        if scenario.recover and not recovered and now - ctx.t0 >= scenario.recover_after:
            scenario.recover(ctx)
            recovered = True
            log(f"[{scenario.name}] +{now - ctx.t0:.0f}s the dependency recovers")
        alerts = firing_alerts(stack, ctx.t0 - LOOKBACK, now)
        for name, span in sorted(alerts.items(), key=lambda kv: kv[1]["first"]):
            if name not in seen:
                seen.add(name)
                since = span["first"] - ctx.t0
                log(f"[{scenario.name}] " + (f"+{since:.0f}s alert {name} firing" if since >= 0
                                             else f"alert {name} was already firing"))
        incidents = _incidents(stack, ctx.t0)
        if scenario.kind != "control" and _settled(scenario, incidents, alerts, now):
            break
    end = time.time()
    time.sleep(2)  # let the last evaluation land
    labels: dict[str, dict[str, str]] = {}
    alerts = firing_alerts(stack, ctx.t0 - LOOKBACK, end, labels)
    carried = sorted(n for n, span in alerts.items() if span["first"] < ctx.t0)
    alerts = {n: span for n, span in alerts.items() if n not in carried}
    top_cause = ranked_root_cause(stack, alerts, labels) if scenario.kind != "control" else None
    incidents = _incidents(stack, ctx.t0)
    related = re.compile(rf"^(?:{scenario.related})$")
    false_pos = sorted(n for n in alerts if not related.match(n))
    relevant = [s["first"] for n, s in alerts.items() if related.match(n)]
    detection = min(relevant) - ctx.t0 if relevant else None
    predicted = None if failure is None else (detection is not None and ctx.t0 + detection < failure)
    lead = (failure - (ctx.t0 + detection)) if failure is not None and detection is not None else None
    mine = [i for i in incidents if related.match(i.get("alertname") or "")]
    starts = [i["remediating_at"] for i in mine if i.get("remediating_at")]
    resolved = [i for i in mine if i["state"] == "resolved" and i.get("resolved_at")
                and any(a.get("verification") == "passed" for a in i["attempts"])]
    escalated = [i for i in mine if i["state"] in ("escalated", "failed")]
    human_new = human.received[human_before:]
    human_alerts = sorted({a["labels"].get("alertname", "") for n in human_new
                           for a in n.get("alerts", []) if a.get("status") == "firing"})
    # resolved after a procedure ran, but its verification was cut short: a resolved alert
    # cancels the rest of the procedure (the fix itself cleared the alert)
    mitigated = [i for i in mine if i["state"] == "resolved" and i.get("remediating_at")
                 and i not in resolved]
    if scenario.kind == "control":
        outcome = "quiet" if not alerts else "false_alarm"
    elif resolved:
        outcome = "auto_resolved"
    elif mitigated:
        outcome = "mitigated"
    elif escalated or any(related.match(name) for name in human_alerts):
        # a human was handed the fault: by the remediator, or by Alertmanager paging for a
        # related alert (inhibition may page the critical one instead of the root cause)
        outcome = "escalated"
    elif detection is not None:
        outcome = "detected"
    else:
        outcome = "missed"
    recovery = min(i["resolved_at"] for i in resolved) - ctx.t0 if resolved else None
    series: list[tuple[float, float]] = []
    if scenario.primary_metric:
        try:
            data = _query_range(stack, scenario.primary_metric, ctx.t0 - 10, end)
            if data:
                series = [(float(t), float(v)) for t, v in data[0]["values"]]
        except requests.RequestException:
            series = []
    forecast: dict[str, list[tuple[float, float]]] = {}
    if scenario.forecast:
        for bound in ("yhat_lower", "yhat", "yhat_upper"):
            try:
                data = _query_range(stack, f'max(vigil_forecast{{forecast="{scenario.forecast}",'
                                           f'bound="{bound}"}})', ctx.t0 - 10, end)
            except requests.RequestException:
                data = []
            if data:
                forecast[f"forecast {bound}"] = [(float(t), float(v)) for t, v in data[0]["values"]]
    result = ScenarioResult(
        name=scenario.name, kind=scenario.kind, expect=scenario.expect,
        root_cause=scenario.root_cause, t0=ctx.t0, end=end,
        failure_moment=failure, alerts=alerts, false_positive_alerts=false_pos,
        carried_over_alerts=carried, detection_seconds=detection, predicted=predicted, lead_seconds=lead,
        remediation_start_seconds=(min(starts) - ctx.t0) if starts else None,
        recovery_seconds=recovery, outcome=outcome,
        root_cause_detected=scenario.root_cause in alerts, root_cause_ranked_first=top_cause,
        incidents=mine,
        human_deliveries=human_alerts, series=series, forecast=forecast, stack=scenario.stack)
    log(f"[{scenario.name}] outcome {outcome}" + (f", recovered in {recovery:.0f}s" if recovery else ""))
    if scenario.undo is not None:
        scenario.undo(ctx)
    else:
        assert isinstance(stack, Stack)
        undo(stack, ctx)
    return result


def _human_receivers(doc: dict[str, Any], url: str) -> dict[str, Any]:
    """Point every receiver without integrations at the scenario's sink, to see human pages."""
    for receiver in doc.get("receivers", []):
        if not any(k.endswith("_configs") for k in receiver):
            receiver["webhook_configs"] = [{"url": url, "send_resolved": True}]
    return doc


class _Done(Exception):
    """Every chosen scenario ran (only reference ones were chosen)."""


def _run_reference(chosen: Sequence[Scenario], workdir: Path, humans: list[Any],
                   stacks: list[Any], args: Any, say: Callable[[str], None]) -> list[ScenarioResult]:
    """The reference stack's scenarios, one after the other on one stack (control first)."""
    from vigil.demo.reference import ReferenceStack

    from vigil.sink import WebhookReceiver

    human = WebhookReceiver().start()
    humans.append(human)
    stack = ReferenceStack(workdir, am_transform=lambda d: _human_receivers(d, human.url))
    stacks.append(stack)
    print(f"starting the reference stack in {workdir}", flush=True)
    stack.start(log=lambda m: print(f"  [reference] {m}", flush=True))
    out = []
    for scenario in chosen:
        duration = args.control_duration if scenario.kind == "control" else args.duration
        out.append(run_scenario(stack, scenario, human, duration=duration, log=say))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run fault scenarios on the real loop and print the scorecard."""
    from vigil.demo.scorecard import Scorecard

    from vigil.sink import WebhookReceiver

    names = [s.name for s in SCENARIOS]
    parser = ArgumentParser(prog="vigil scenarios", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"scenarios to run (default: all): "
                        f"{', '.join(names)}")
    parser.add_argument("--output-dir", default="scenario-results",
                        help="where to write scorecard.json, scorecard.md and timeline PNGs")
    parser.add_argument("--duration", type=float, default=None,
                        help="watch each scenario at most this long (default: its own)")
    parser.add_argument("--control-duration", type=float, default=None,
                        help="length of the control run (default: 600 s)")
    parser.add_argument("--workdir", default=None, help="stack working directory (default: temp)")
    parser.add_argument("--sequential", action="store_true",
                        help="run the control on the same stack as the faults, before them, "
                             "instead of on a second stack beside them")
    parser.add_argument("--stack", choices=("demo", "reference", "all"), default="demo",
                        help="the stack the scenarios run on: the demo target, the reference "
                             "stack of third-party apps (docs/reference-stack.md), or both, one "
                             "after the other (default: demo)")
    args = parser.parse_args(argv)
    from vigil.demo.reference_scenarios import REFERENCE_SCENARIOS

    pool = [*(SCENARIOS if args.stack in ("demo", "all") else ()),
            *(REFERENCE_SCENARIOS if args.stack in ("reference", "all") else ())]
    known = sorted({s.name for s in pool})
    unknown = [n for n in args.names if n not in known]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)} on --stack {args.stack}; "
                     f"known: {', '.join(known)}")
    chosen = [s for s in SCENARIOS if args.stack != "reference" and (not args.names or s.name in args.names)]
    reference = [s for s in REFERENCE_SCENARIOS
                 if args.stack != "demo" and (not args.names or s.name in args.names)]
    control = [s for s in chosen if s.kind == "control"]
    faults = [s for s in chosen if s.kind != "control"]
    parallel = bool(control and faults) and not args.sequential
    stop_on_sigterm()
    started = time.monotonic()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vigil-scenarios-"))
    humans: list[Any] = []
    stacks: list[Any] = []

    def new_stack(path: Path, *, default_ports: bool) -> tuple[Stack, Any]:
        """A stack whose human receivers deliver to a sink of its own."""
        human = WebhookReceiver().start()
        humans.append(human)
        stack = Stack(path, prefer_default_ports=default_ports,
                      am_transform=lambda d: _human_receivers(d, human.url))
        stacks.append(stack)
        return stack, human

    results: list[ScenarioResult] = []
    control_results: list[ScenarioResult] = []
    errors: list[BaseException] = []
    say = lambda m: print(m, flush=True)
    try:
        if reference:
            results += _run_reference(reference, workdir / "reference", humans, stacks, args, say)
        if not chosen:
            raise _Done
        if parallel:
            # The control run gets a stack of its own and runs beside the fault scenarios:
            # the suite then lasts max(control, faults) instead of their sum, and no fault's
            # tail (slow SLO windows) can leak into the control's count.
            print(f"starting the control stack in {workdir / 'control'}", flush=True)
            control_stack, control_human = new_stack(workdir / "control", default_ports=False)
            control_stack.start(log=lambda m: print(f"  [control] {m}", flush=True))
        thread = None
        print(f"starting the stack in {workdir}", flush=True)
        stack, human = new_stack(workdir, default_ports=True)
        stack.start(log=lambda m: print(f"  {m}", flush=True))
        if parallel:
            def run_control() -> None:
                try:
                    control_results.append(run_scenario(
                        control_stack, control[0], control_human, duration=args.control_duration,
                        log=say))
                except Exception as exc:  # noqa: BLE001 - reported by the main thread
                    errors.append(exc)

            thread = threading.Thread(target=run_control, name="control", daemon=True)
            thread.start()
        for scenario in (faults if parallel else chosen):
            duration = args.control_duration if scenario.kind == "control" else args.duration
            results.append(run_scenario(stack, scenario, human, duration=duration, log=say))
        if thread is not None:
            while thread.is_alive():
                thread.join(1)
            if errors:
                raise errors[0]
    except _Done:
        pass
    except KeyboardInterrupt:
        print("interrupted; scoring what ran", file=sys.stderr)
    except (TimeoutError, RuntimeError, requests.RequestException) as exc:
        print(f"vigil scenarios: error: {exc}", file=sys.stderr)
        return 1
    finally:
        for one in stacks:
            one.stop()
        for sink in humans:
            sink.stop()
    results = control_results + results
    card = Scorecard(results)
    out = Path(args.output_dir)
    card.write(out)
    card.print()
    print(f"\nwall time {time.monotonic() - started:.0f}s ({len(results)} scenarios"
          + (", the control on its own stack beside the faults" if parallel else "") + ")")
    print(f"wrote {out / 'scorecard.json'}, {out / 'scorecard.md'} and timelines in {out}")
    return 0
