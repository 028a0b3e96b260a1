"""Crash mid-procedure: a remediator process SIGKILLed during a `wait` step, and at every point
between a step's end and the incident's transition.

As docs/remediator.md ("Crash reconciliation") documents: the interrupted attempt is marked
failed ("interrupted"); an idempotent procedure whose alert still fires is re-run, anything
else is escalated. No incident stays `remediating`, and a non-idempotent step never runs twice.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
from vigil.remediator.failpoints import POINTS

from tests.harness import wait_for
from tests.reliability.helpers import (
    WEBHOOK_AUTH,
    Recorder,
    RemediatorSpec,
    alert,
    notification,
    remediator_config,
    remediator_process,
    store_rows,
)


def procedures(recorder: Recorder) -> list[dict[str, Any]]:
    def proc(name: str, idempotent: bool, wait: str) -> dict[str, Any]:
        return {"name": name, "match": [f'alertname="{name}Alert"'], "idempotent": idempotent,
                "cooldown": "1h", "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}},
                "target": "${id}",
                "steps": [{"action": "http", "url": f"{recorder.url}/log/{name}-${{id}}", "retries": 0},
                          {"action": "wait", "seconds": wait}]}

    # the idempotent run is short so its re-run finishes; the other would wait for 10 minutes
    return [proc("once", False, "10m"), proc("again", True, "3s")]


def start(start_process: Any, spec: RemediatorSpec, tmp_path: Path, tag: str) -> Any:
    proc = remediator_process(spec, tmp_path / tag)
    return start_process(proc)


def fire(spec: RemediatorSpec, *alerts: dict[str, Any]) -> None:
    resp = requests.post(f"{spec.url}/api/v1/alerts", json=notification(*alerts),
                         headers=WEBHOOK_AUTH, timeout=10)
    assert resp.status_code == 200, resp.text


def attempts_running(pg_url: str, n: int) -> bool:
    rows = store_rows(pg_url, "SELECT state FROM attempts")
    return [r["state"] for r in rows] == ["running"] * n


def settled(pg_url: str) -> bool:
    """Both incidents in their final state (not merely out of `remediating` for a moment)."""
    rows = {r["fingerprint"]: r["state"] for r in store_rows(pg_url, "SELECT fingerprint, state FROM incidents")}
    return rows == {"aa": "escalated", "bb": "resolved"}


def assert_reconciled(pg_url: str, recorder: Recorder) -> None:
    incidents = {r["fingerprint"]: r for r in store_rows(pg_url, "SELECT * FROM incidents")}
    assert incidents["aa"]["state"] == "escalated"
    assert "not idempotent" in incidents["aa"]["reason"]
    assert incidents["bb"]["state"] == "resolved"
    once = store_rows(pg_url, "SELECT state, reason FROM attempts WHERE incident_id = :i ORDER BY id",
                      i=incidents["aa"]["id"])
    assert [a["state"] for a in once] == ["failed"] and "interrupted" in once[0]["reason"]
    again = store_rows(pg_url, "SELECT state FROM attempts WHERE incident_id = :i ORDER BY id",
                       i=incidents["bb"]["id"])
    assert [a["state"] for a in again] == ["failed", "succeeded"]
    counts = recorder.counts()
    assert counts["once-1"] == 1, "a non-idempotent step ran twice"
    assert counts["again-2"] == 2  # the documented idempotent re-run
    assert not store_rows(pg_url, "SELECT id FROM incidents WHERE state IN ('remediating', 'open')")
    assert [e["fingerprint"] for e in recorder.escalations] == ["aa"]
    assert "reconciled" in recorder.escalations[0]["reason"]


def test_sigkill_during_a_wait_step_is_reconciled_on_restart(
        tmp_path: Path, pg_url: str, start_process: Any) -> None:
    recorder = Recorder().start()
    try:
        spec = remediator_config(tmp_path, pg_url, "replica-a", procedures(recorder),
                                 escalation={"url": f"{recorder.url}/escalate"})
        first = start(start_process, spec, tmp_path, "first")
        fire(spec, alert("onceAlert", "aa", labels={"id": "1"}),
             alert("againAlert", "bb", labels={"id": "2"}))
        wait_for(lambda: attempts_running(pg_url, 2) and len(recorder.counts()) == 2, timeout=30,
                 what="both procedures inside their wait step")
        first.kill()  # SIGKILL: no clean-up, the attempts stay `running` in the store
        assert attempts_running(pg_url, 2)

        start(start_process, spec, tmp_path, "second")  # same replica_id, as a restarted pod
        wait_for(lambda: settled(pg_url), timeout=60, what="escalation of `once`, re-run of `again`")
        assert_reconciled(pg_url, recorder)
    finally:
        recorder.stop()


def test_surviving_replica_reconciles_a_dead_peers_attempt(
        tmp_path: Path, pg_url: str, start_process: Any) -> None:
    recorder = Recorder().start()
    try:
        settings = {"escalation": {"url": f"{recorder.url}/escalate"}, "stale_after": "2s"}
        a = remediator_config(tmp_path, pg_url, "replica-a", procedures(recorder), **settings)
        b = remediator_config(tmp_path, pg_url, "replica-b", procedures(recorder), **settings)
        doomed = start(start_process, a, tmp_path, "a")
        start(start_process, b, tmp_path, "b")
        fire(a, alert("onceAlert", "aa", labels={"id": "1"}),
             alert("againAlert", "bb", labels={"id": "2"}))
        wait_for(lambda: attempts_running(pg_url, 2) and len(recorder.counts()) == 2, timeout=30,
                 what="both procedures inside their wait step on replica-a")
        doomed.kill()  # replica-a never comes back (scaled down, node lost)
        # replica-b's heartbeat-based takeover: stale_after plus a sweep plus the 3 s re-run
        wait_for(lambda: settled(pg_url), timeout=60, what="replica-b to reconcile replica-a's attempts")
        assert_reconciled(pg_url, recorder)
    finally:
        recorder.stop()


# --- SIGKILL between a step's end and the incident's transition ------------------------------

TERMINAL = ("resolved", "escalated", "failed")


def crash_procedures(recorder: Recorder) -> list[dict[str, Any]]:
    """Two non-idempotent procedures with a side effect on the recorder: `ok` succeeds,
    `broken` then fails a step (so it escalates, to the recorder too)."""
    fail = {"action": "command", "argv": [sys.executable, "-c", "raise SystemExit(3)"]}
    return [{"name": name, "match": [f'alertname="{name}Alert"'], "idempotent": False,
             "cooldown": 0, "max_concurrent": 4,
             "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}}, "target": "${id}",
             "steps": [{"action": "http", "url": f"{recorder.url}/log/{name}-${{id}}", "retries": 0},
                       *([fail] if name == "broken" else [])]}
            for name in ("ok", "broken")]


def all_terminal(pg_url: str, n: int) -> list[dict[str, Any]] | None:
    rows = store_rows(pg_url, "SELECT id, fingerprint, procedure, state, reason FROM incidents")
    return rows if len(rows) == n and all(r["state"] in TERMINAL for r in rows) else None


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_between_a_step_and_the_incident_transition_leaves_nothing_stuck(
        point: str, tmp_path: Path, pg_url: str, start_process: Any) -> None:
    recorder = Recorder().start()
    try:
        spec = remediator_config(tmp_path, pg_url, "replica-a", crash_procedures(recorder),
                                 escalation={"url": f"{recorder.url}/escalate"})
        armed = remediator_process(spec, tmp_path / "first")
        armed.env = {"VIGIL_REMEDIATOR_CRASH_AT": point}
        first = start_process(armed)
        alerts = [alert("okAlert", f"a{i}", labels={"id": str(i)}) for i in range(1, 4)]
        alerts.append(alert("brokenAlert", "b9", labels={"id": "9"}))
        fire(spec, *alerts)
        wait_for(lambda: not first.alive(), timeout=30, what=f"the remediator to crash at {point}")
        assert first.proc is not None and first.proc.returncode == -signal.SIGKILL

        start(start_process, spec, tmp_path, "second")  # unarmed, same replica id
        rows = wait_for(lambda: all_terminal(pg_url, len(alerts)), timeout=60,
                        what="every incident in a terminal state after the restart")
        counts = recorder.counts()
        assert max(counts.values()) == 1, f"a non-idempotent step ran twice: {counts}"
        for row in rows:
            key = f"{row['procedure']}-{int(row['fingerprint'][1:])}"
            attempts = store_rows(pg_url, "SELECT state, reason FROM attempts WHERE incident_id = :i "
                                          "ORDER BY id", i=row["id"])
            assert attempts and all(a["state"] not in ("queued", "running") for a in attempts)
            if row["state"] == "resolved":  # ran, once, to success
                assert counts[key] == 1 and attempts[-1]["state"] == "succeeded", (row, attempts)
            else:  # interrupted (not idempotent: never re-run) or its step failed
                assert row["state"] == "escalated", (row, attempts)
                assert ("not idempotent" in row["reason"] or row["procedure"] == "broken"), row
        escalated = {r["id"] for r in rows if r["state"] == "escalated"}
        assert escalated <= {e["incident"] for e in recorder.escalations}
        assert not store_rows(pg_url, "SELECT id FROM incidents WHERE state IN "
                                      "('open', 'remediating', 'awaiting_approval')")
    finally:
        recorder.stop()
