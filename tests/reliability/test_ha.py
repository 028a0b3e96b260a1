"""Exactly once under HA: a real Prometheus feeds two gossiping Alertmanagers, each of which
sends every notification to both remediator replicas, which share one PostgreSQL.

200 distinct alerts fire; each alert's procedure POSTs /log/<id> to a recording server. Every
id must be logged exactly once, and every incident must be complete (one succeeded attempt,
resolved, with its audit trail). The second variant SIGKILLs one Alertmanager mid-run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.harness import wait_for
from tests.reliability.helpers import (
    Recorder,
    metric_value,
    remediator_config,
    remediator_process,
    store_rows,
)
from vigil.procs import free_port, prometheus_config

ALERTS = 200
RULE = {"groups": [{"name": "reliability", "rules": [{
    "alert": "ReliabilityProbe", "expr": "reliability_fault > 0",
    "labels": {"remediation": "auto"},
    "annotations": {"summary": "reliability probe"}}]}]}


def append_procedure(recorder: Recorder) -> dict[str, Any]:
    return {"name": "append-log", "match": ['alertname="ReliabilityProbe"'],
            "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}},
            "target": "probe-${id}", "cooldown": 0, "max_concurrent": 8,
            # one try: a retry could itself duplicate the side effect we are counting
            "steps": [{"action": "http", "method": "POST", "url": f"{recorder.url}/log/${{id}}",
                       "retries": 0, "timeout": "10s"}]}


def alertmanager_yaml(token_file: Path, webhook_urls: list[str]) -> dict[str, Any]:
    return {
        "route": {"receiver": "vigil-remediator", "group_by": ["..."], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "vigil-remediator", "webhook_configs": [
            {"url": url, "send_resolved": False, "max_alerts": 0,
             "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}
            for url in webhook_urls]}],
    }


def run_ha(tmp_path: Path, pg_url: str, start_process: Any, prometheus_factory: Any,
           alertmanager_factory: Any, *, kill_one: bool) -> dict[str, Any]:
    recorder = Recorder().start()
    try:
        procs = [append_procedure(recorder)]
        specs = [remediator_config(tmp_path, pg_url, r, procs) for r in ("replica-a", "replica-b")]
        for spec in specs:
            start_process(remediator_process(spec, tmp_path))
        token_file = tmp_path / "secrets" / "webhook-token"
        am_config = alertmanager_yaml(token_file, [f"{s.url}/api/v1/alerts" for s in specs])
        gossip = [f"127.0.0.1:{free_port()}" for _ in range(2)]
        cluster_flags = ["--cluster.peer-timeout=2s", "--cluster.gossip-interval=100ms",
                         "--cluster.pushpull-interval=2s"]
        managers = [alertmanager_factory(am_config, cluster_listen=gossip[i], peers=[gossip[1 - i]],
                                         extra_args=cluster_flags) for i in range(2)]
        rules = tmp_path / "reliability.rules.yml"
        rules.write_text(yaml.safe_dump(RULE))
        _, prom_url = prometheus_factory(prometheus_config(
            {"probe": [f"127.0.0.1:{recorder.port}"]}, rule_files=[rules],
            alertmanagers=[url.removeprefix("http://") for _, url in managers]))

        first = {str(i) for i in range(ALERTS // 2)}
        with recorder.lock:
            recorder.firing |= first
        if kill_one:
            # half the procedures have run through the cluster: now one Alertmanager dies
            wait_for(lambda: len(recorder.counts()) >= ALERTS // 4, timeout=90,
                     what="a quarter of the procedures to run")
            managers[0][0].kill()
        with recorder.lock:
            recorder.firing |= {str(i) for i in range(ALERTS)}

        def all_done() -> bool:
            rows = store_rows(pg_url, "SELECT count(*) AS n FROM incidents WHERE state = 'resolved'")
            return len(recorder.counts()) == ALERTS and rows[0]["n"] == ALERTS

        wait_for(all_done, timeout=150, interval=0.5, what=f"{ALERTS} procedures and incidents")
        # a quiet period in which a late duplicate (the peer-timeout fallback of the second
        # Alertmanager, a re-flush) would still land and run: not a timing assertion
        time.sleep(5)
        # both replicas acknowledged notifications: the dedup and the claim were contended
        accepted = [metric_value(requests.get(f"{s.url}/metrics", timeout=10).text,
                                 "vigil_webhook_notifications_total", {"result": "accepted"})
                    for s in specs]
        assert all(n >= ALERTS / 2 for n in accepted), accepted
        return {"counts": recorder.counts(), "prom": prom_url}
    finally:
        recorder.stop()


def assert_exactly_once(pg_url: str, counts: Any) -> None:
    expected = {str(i) for i in range(ALERTS)}
    assert set(counts) == expected, f"missing: {sorted(expected - set(counts))[:10]}"
    dupes = {k: v for k, v in counts.items() if v != 1}
    assert not dupes, f"procedures ran more than once: {dupes}"
    alerts = store_rows(pg_url, "SELECT labels, status FROM alerts")
    assert sorted(a["labels"]["id"] for a in alerts) == sorted(expected)
    incidents = store_rows(pg_url, "SELECT id, state, procedure, reason, remediating_at, resolved_at "
                                   "FROM incidents")
    assert len(incidents) == ALERTS
    assert {i["state"] for i in incidents} == {"resolved"}
    assert {i["procedure"] for i in incidents} == {"append-log"}
    assert all(i["remediating_at"] and i["resolved_at"] for i in incidents)
    attempts = store_rows(pg_url, "SELECT incident_id, state, steps, finished_at FROM attempts")
    per_incident: dict[int, list[dict[str, Any]]] = {}
    for att in attempts:
        per_incident.setdefault(att["incident_id"], []).append(att)
    assert len(per_incident) == ALERTS
    for inc_id, atts in per_incident.items():
        assert [a["state"] for a in atts] == ["succeeded"], (inc_id, atts)
        assert [s["status"] for s in atts[0]["steps"]] == ["ok"]
        assert atts[0]["finished_at"] is not None
    audit = store_rows(pg_url, "SELECT incident_id, detail FROM audit_log "
                               "WHERE action = 'incident.state' ORDER BY id")
    trail: dict[int, list[str]] = {}
    for row in audit:
        trail.setdefault(row["incident_id"], []).append(row["detail"]["state"])
    assert len(trail) == ALERTS
    assert all(t == ["remediating", "resolved"] for t in trail.values()), trail


@pytest.mark.parametrize("kill_one", [False, True], ids=["cluster", "one-alertmanager-sigkilled"])
def test_exactly_once_with_two_alertmanagers_and_two_replicas(
        kill_one: bool, tmp_path: Path, pg_url: str, start_process: Any, prometheus_factory: Any,
        alertmanager_factory: Any) -> None:
    result = run_ha(tmp_path, pg_url, start_process, prometheus_factory, alertmanager_factory,
                    kill_one=kill_one)
    assert_exactly_once(pg_url, result["counts"])
    # duplicates really arrived (HA sends each alert more than once) and were absorbed
    notes = store_rows(pg_url, "SELECT count(*) AS n FROM notifications")[0]["n"]
    assert notes >= 2 * ALERTS
