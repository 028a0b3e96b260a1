"""Target faults during remediation: the target refuses, hangs, answers garbage or streams an
endless body. Each step ends within its configured bound (timeout x tries + backoff), the
per-host circuit breaker opens after its threshold (5 failures), every incident is escalated,
and the remediator's memory stays bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from tests.harness import wait_for
from tests.reliability.helpers import (
    WEBHOOK_AUTH,
    HostileServer,
    Recorder,
    alert,
    metric_value,
    notification,
    remediator_config,
    remediator_process,
    rss_peak_bytes,
    store_rows,
)
from vigil.procs import free_port

TIMEOUT = 1.0
RETRIES = 2
BACKOFF = 0.1
INCIDENTS_PER_FAULT = 3
# tenacity's exponential wait: multiplier * 2**n for the n-th retry, capped at 10 s
STEP_BOUND = (RETRIES + 1) * TIMEOUT + sum(min(BACKOFF * 2 ** n, 10) for n in range(1, RETRIES + 1))
SLACK = 3.0  # scheduling on a busy 2-core machine; a hang would exceed it by far
MEMORY_BOUND = 300 * 1024 * 1024


def run_faults(tmp_path: Path, start_process: Any, modes: tuple[str, ...]) -> None:
    recorder = Recorder().start()
    servers = {mode: HostileServer(mode) for mode in modes if mode != "refuse"}
    hosts = {mode: f"127.0.0.1:{servers[mode].port}" if mode in servers else f"127.0.0.1:{free_port()}"
             for mode in modes}
    try:
        procs = [{"name": f"fix-{mode}", "match": [f'alertname="Fault{mode}"'], "cooldown": 0,
                  "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}}, "target": "${id}",
                  "steps": [{"action": "http", "url": f"http://{host}/admin/restart",
                             "timeout": TIMEOUT, "retries": RETRIES, "retry_backoff": BACKOFF}]}
                 for mode, host in hosts.items()]
        spec = remediator_config(tmp_path, f"sqlite:///{tmp_path / 'faults.db'}", "faults", procs,
                                 escalation={"url": f"{recorder.url}/escalate", "timeout": "5s"})
        proc = start_process(remediator_process(spec, tmp_path))
        # one incident at a time per procedure (max_concurrent 1): the breaker sees them in turn
        for k, mode in enumerate(hosts):
            for i in range(INCIDENTS_PER_FAULT):
                resp = requests.post(f"{spec.url}/api/v1/alerts", headers=WEBHOOK_AUTH, timeout=10,
                                     json=notification(alert(f"Fault{mode}", f"{k:x}{i:x}0",
                                                             labels={"id": str(i)})))
                assert resp.status_code == 200, resp.text
        total = len(hosts) * INCIDENTS_PER_FAULT
        wait_for(lambda: len(store_rows(f"sqlite:///{tmp_path / 'faults.db'}",
                                        "SELECT id FROM incidents WHERE state = 'escalated'")) == total,
                 timeout=120, interval=0.5, what="every incident escalated")
        db = f"sqlite:///{tmp_path / 'faults.db'}"
        rows = store_rows(db, "SELECT i.procedure, i.reason, a.state, a.steps FROM incidents i "
                              "JOIN attempts a ON a.incident_id = i.id ORDER BY a.id")
        assert len(rows) == total
        breaker_tripped: dict[str, bool] = {}
        for row in rows:
            assert row["state"] == "failed", row
            steps = json.loads(row["steps"]) if isinstance(row["steps"], str) else row["steps"]
            (step,) = steps
            assert step["status"] == "failed"
            assert step["duration_seconds"] <= STEP_BOUND + SLACK, row
            if "circuit breaker" in step["output"]:
                breaker_tripped[row["procedure"]] = True
        # 3 tries per incident: the 5th consecutive failure opens the breaker during the 2nd
        # incident, so the 3rd is refused without a request
        assert breaker_tripped == {f"fix-{mode}": True for mode in hosts}
        metrics = requests.get(f"{spec.url}/metrics", timeout=10).text
        for host in hosts.values():
            assert metric_value(metrics, "vigil_circuit_breaker_state", {"breaker": host}) in (1.0, 2.0)
        assert sorted(e["procedure"] for e in recorder.escalations) == sorted(
            f"fix-{mode}" for mode in hosts for _ in range(INCIDENTS_PER_FAULT))
        assert requests.get(f"{spec.url}/-/healthy", timeout=10).status_code == 200
        assert rss_peak_bytes(proc.pid) < MEMORY_BOUND, "reading a body exhausted memory"
    finally:
        for server in servers.values():
            server.stop()
        recorder.stop()


def test_refusing_hanging_and_garbage_targets_are_bounded_and_escalated(
        tmp_path: Path, start_process: Any) -> None:
    run_faults(tmp_path, start_process, ("refuse", "hang", "garbage"))


def test_an_endless_response_body_is_bounded_in_memory(tmp_path: Path, start_process: Any) -> None:
    """A 200 whose body never ends: the step ends within its bound (whether it then counts the
    200 as success or the unfinished body as failure), and memory stays bounded."""
    server = HostileServer("endless")
    db = f"sqlite:///{tmp_path / 'endless.db'}"
    try:
        spec = remediator_config(tmp_path, db, "endless", [{
            "name": "fix-endless", "match": ['alertname="FaultEndless"'], "cooldown": 0,
            "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}}, "target": "${id}",
            "steps": [{"action": "http", "url": f"{server.url}/admin/restart", "timeout": TIMEOUT,
                       "retries": RETRIES, "retry_backoff": BACKOFF}]}])
        proc = start_process(remediator_process(spec, tmp_path))
        for i in range(2):
            resp = requests.post(f"{spec.url}/api/v1/alerts", headers=WEBHOOK_AUTH, timeout=10,
                                 json=notification(alert("FaultEndless", f"e{i}", labels={"id": str(i)})))
            assert resp.status_code == 200, resp.text
        wait_for(lambda: len(store_rows(db, "SELECT id FROM incidents WHERE state IN "
                                            "('resolved', 'escalated', 'failed')")) == 2,
                 timeout=120, interval=0.5, what="both incidents to finish")
        for row in store_rows(db, "SELECT steps FROM attempts"):
            steps = json.loads(row["steps"]) if isinstance(row["steps"], str) else row["steps"]
            assert steps[0]["duration_seconds"] <= STEP_BOUND + SLACK, steps
            assert len(steps[0]["output"]) <= 4096 + 100  # stored output is clipped
        assert rss_peak_bytes(proc.pid) < MEMORY_BOUND, "reading an endless body exhausted memory"
    finally:
        server.stop()
