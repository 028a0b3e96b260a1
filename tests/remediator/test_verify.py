"""Verification through a real Prometheus; rollback and escalation; and the whole loop:
a real Prometheus rule -> real Alertmanager webhook -> remediator restarts the leaking target."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.harness import prom_value
from tests.remediator.conftest import (
    WEBHOOK_TOKEN,
    alert,
    incidents,
    notification,
    post,
    procedure,
    timeline,
    wait_until,
)
from tests.remediator.test_actions import INSTANCE_PARAM, demo_config
from vigil.procs import prometheus_config


def restart_step() -> dict[str, Any]:
    return {"action": "http", "url": "http://${instance}/admin/restart", "credentials": "demo-admin"}


def memory_rule(path: Path) -> Path:
    """A time-compressed copy of the memory rule: fires 1 s after the leak passes 4 MB."""
    path.write_text(yaml.safe_dump({"groups": [{"name": "compressed", "interval": "1s", "rules": [{
        "alert": "TargetMemoryExhaustionPredicted",
        "expr": 'demo_memory_leak_bytes{job="demo"} > 4e6',
        "for": "1s", "labels": {"severity": "warning", "remediation": "auto"},
        "annotations": {"summary": "Memory will run out."}}]}]}))
    return path


async def finished(client: Any, fingerprint: str) -> dict[str, Any] | None:
    rows = [r for r in await incidents(client) if r["fingerprint"] == fingerprint]
    return rows[0] if rows and rows[0]["state"] in ("resolved", "escalated", "failed") else None


async def test_verification_passes_and_fails_with_rollback_and_escalation(
        make_config: Any, start_remediator: Any, demo_target: Any, prometheus_factory: Any,
        webhook_receiver: Any) -> None:
    _, prom = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]}))
    await wait_until(lambda: prom_value(prom, "up") == 1, what="demo scraped")
    demo_target.inject(memory_growth_bytes_per_second=3_000_000)
    await wait_until(lambda: (prom_value(prom, "demo_memory_leak_bytes") or 0) > 0, what="leak seen")
    good = procedure("restart", params=INSTANCE_PARAM, steps=[restart_step()], verify={
        "query": 'demo_memory_leak_bytes{instance="${instance}"} == 0', "timeout": "30s",
        "interval": "500ms", "consecutive": 2})
    bad = procedure("breaker", params=INSTANCE_PARAM, steps=[
        {"action": "circuit_breaker", "url": "http://${instance}/admin/circuit-breaker",
         "state": "open", "credentials": "demo-admin"}],
        verify={"query": 'demo_circuit_breaker_open{instance="${instance}"} == 42', "timeout": "2s",
                "interval": "500ms"},
        rollback=[{"action": "circuit_breaker", "url": "http://${instance}/admin/circuit-breaker",
                   "state": "closed", "credentials": "demo-admin"}])
    config = demo_config(make_config, demo_target, [good, bad], prometheus_url=prom,
                         escalation={"url": webhook_receiver.url})
    client = await start_remediator(config)
    labels = {"instance": demo_target.host_port}
    await post(client, notification(alert("restartAlert", "aa", labels=labels)))
    inc = await wait_until(lambda: finished(client, "aa"), what="restart verified")
    tl = await timeline(client, inc["id"])
    assert inc["state"] == "resolved", tl
    assert tl["attempts"][0]["verification"] == "passed"
    assert "condition holds" in tl["attempts"][0]["verification_detail"]

    await post(client, notification(alert("breakerAlert", "bb", labels=labels)))
    inc = await wait_until(lambda: finished(client, "bb"), what="breaker verification fails")
    tl = await timeline(client, inc["id"])
    attempt = tl["attempts"][0]
    assert attempt["state"] == "rolled_back", tl
    assert attempt["verification"] == "failed" and "timed out after 2s" in attempt["verification_detail"]
    assert [s["status"] for s in attempt["rollback_steps"]] == ["ok"]
    assert demo_target.metric("demo_circuit_breaker_open") == 0  # rolled back
    assert inc["state"] == "escalated" and "verification failed" in inc["reason"]
    await wait_until(lambda: webhook_receiver.received, what="escalation")
    sent = webhook_receiver.received[0]
    assert sent["incident"] == inc["id"] and sent["alertname"] == "breakerAlert"
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_attempts_total{procedure="restart",result="succeeded"} 1.0' in metrics
    assert 'vigil_remediation_attempts_total{procedure="breaker",result="rolled_back"} 1.0' in metrics
    assert 'vigil_remediation_duration_seconds_count{procedure="breaker"} 1.0' in metrics
    assert "vigil_incident_resolution_seconds_count 1.0" in metrics


async def test_prometheus_rule_alertmanager_webhook_restarts_leaking_target(
        make_config: Any, start_remediator: Any, demo_target: Any, prometheus_factory: Any,
        alertmanager_factory: Any, tmp_path: Path) -> None:
    """The whole loop, with a time-compressed copy of the memory rule."""
    proc = procedure("restart-leaking-target", match=['alertname="TargetMemoryExhaustionPredicted"',
                                                      'remediation="auto"'],
                     params=INSTANCE_PARAM, target="${instance}", idempotent=True,
                     steps=[restart_step()],
                     verify={"query": 'demo_memory_leak_bytes{instance="${instance}"} == 0',
                             "timeout": "60s", "interval": "500ms", "consecutive": 2})
    token_file = tmp_path / "am-token"
    token_file.write_text(WEBHOOK_TOKEN)
    # Prometheus first, so the remediator can verify through it
    rules = memory_rule(tmp_path / "rules.yml")
    client_holder: dict[str, Any] = {}
    config = demo_config(make_config, demo_target, [proc])
    # the remediator's URL is only known once it listens: start it, then Alertmanager, then Prometheus
    client = await start_remediator(config)
    client_holder["c"] = client
    webhook = str(client.make_url("/api/v1/alerts"))
    _, am = alertmanager_factory({
        "route": {"receiver": "vigil-remediator", "group_by": ["..."], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "vigil-remediator", "webhook_configs": [{
            "url": webhook, "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}]}]})
    _, prom = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]},
                                                   rule_files=[rules],
                                                   alertmanagers=[am.removeprefix("http://")]))
    config.prometheus_url = prom
    config.alertmanager_url = am
    demo_target.inject(memory_growth_bytes_per_second=3_000_000)

    async def resolved() -> Any:
        rows = await incidents(client)
        if not rows or rows[0]["state"] != "resolved":
            return None
        attempts = (await timeline(client, rows[0]["id"]))["attempts"]
        return rows[0] if attempts and attempts[0]["finished_at"] else None

    inc = await wait_until(resolved, timeout=90, what="the remediator to restart and verify")
    tl = await timeline(client, inc["id"])
    assert tl["alert"]["labels"]["remediation"] == "auto"
    assert tl["attempts"][0]["state"] == "succeeded"
    assert tl["attempts"][0]["verification"] == "passed"
    assert demo_target.metric("demo_restarts_total") == 1
    assert demo_target.metric("demo_memory_leak_bytes") == 0
    # and Alertmanager reports the alert resolved; the incident records it
    async def alert_resolved() -> Any:
        rows = await incidents(client)
        return rows[0]["alert_resolved_at"] is not None

    await wait_until(alert_resolved, timeout=60, what="Alertmanager's resolved notification")
    rows = await incidents(client)
    assert len(rows) == 1 and rows[0]["state"] == "resolved"


async def test_alert_resolving_during_verification_does_not_end_the_verdict(
        make_config: Any, start_remediator: Any, demo_target: Any, prometheus_factory: Any,
        webhook_receiver: Any) -> None:
    """An open breaker makes its own alert resolve (it hides the failing calls): the run keeps
    verifying what its step did, read-only. A fix that holds later is `succeeded`; one that
    never holds is still rolled back and escalated."""
    _, prom = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]}))
    await wait_until(lambda: prom_value(prom, "up") == 1, what="demo scraped")
    breaker = "http://${instance}/admin/circuit-breaker"

    def shed(name: str, holds_when: str) -> dict[str, Any]:
        return procedure(name, params=INSTANCE_PARAM, steps=[
            {"action": "circuit_breaker", "url": breaker, "state": "open", "credentials": "demo-admin"}],
            verify={"query": holds_when, "timeout": "8s", "interval": "500ms", "consecutive": 2},
            rollback=[{"action": "circuit_breaker", "url": breaker, "state": "closed",
                       "credentials": "demo-admin"}])

    # holds once someone restarts the target (what the test does after the alert resolved)
    later = shed("shed", 'demo_restarts_total{instance="${instance}"} == 1')
    never = shed("never", 'demo_circuit_breaker_open{instance="${instance}"} == 42')
    config = demo_config(make_config, demo_target, [later, never], prometheus_url=prom,
                         escalation={"url": webhook_receiver.url})
    client = await start_remediator(config)
    labels = {"instance": demo_target.host_port}

    async def attempt_of(fingerprint: str) -> dict[str, Any] | None:
        rows = [r for r in await incidents(client) if r["fingerprint"] == fingerprint]
        if not rows:
            return None
        attempts = (await timeline(client, rows[0]["id"]))["attempts"]
        return attempts[0] if attempts and attempts[0]["finished_at"] else None

    # 1. the alert resolves while the breaker is open; the condition holds later
    await post(client, notification(alert("shedAlert", "aa", labels=labels)))
    await wait_until(lambda: demo_target.metric("demo_circuit_breaker_open") == 1, what="breaker open")
    await post(client, notification(alert("shedAlert", "aa", labels=labels, status="resolved")))
    row = next(r for r in await incidents(client) if r["fingerprint"] == "aa")
    assert row["state"] == "resolved"
    early = await attempt_of("aa")
    assert early is None, {k: early[k] for k in ("state", "reason", "verification", "verification_detail", "steps")}  # still verifying
    demo_target.admin("POST", "/admin/restart")
    attempt = await wait_until(lambda: attempt_of("aa"), what="the verdict after resolution")
    assert attempt["state"] == "succeeded" and attempt["verification"] == "passed", attempt
    assert "the alert resolved meanwhile" in attempt["verification_detail"]

    # 2. the same, but the condition never holds: rolled back and escalated all the same
    demo_target.admin("POST", "/admin/circuit-breaker", {"state": "closed"})
    await post(client, notification(alert("neverAlert", "bb", labels=labels)))
    await wait_until(lambda: demo_target.metric("demo_circuit_breaker_open") == 1, what="breaker open")
    await post(client, notification(alert("neverAlert", "bb", labels=labels, status="resolved")))
    attempt = await wait_until(lambda: attempt_of("bb"), timeout=30, what="the failed verdict")
    brief = {k: attempt[k] for k in ("state", "reason", "verification", "verification_detail")}
    assert attempt["state"] == "rolled_back" and attempt["verification"] == "failed", brief
    assert [s["status"] for s in attempt["rollback_steps"]] == ["ok"]
    assert demo_target.metric("demo_circuit_breaker_open") == 0  # the rollback ran
    await wait_until(lambda: webhook_receiver.received, what="escalation")
    assert webhook_receiver.received[-1]["alertname"] == "neverAlert"
