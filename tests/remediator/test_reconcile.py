"""A remediator killed mid-procedure: the next start finds the attempts and reconciles them."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
import yaml
from vigil.remediator.store import Store

from tests.harness import wait_for
from tests.remediator.conftest import (
    WEBHOOK_AUTH,
    alert,
    incidents,
    notification,
    timeline,
    wait_until,
)
from vigil.procs import ManagedProcess, free_port

APPEND = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"


def procedures(tmp_path: Path, wait: str) -> list[dict[str, Any]]:
    out = []
    for name, idempotent in (("again", True), ("once", False)):
        out.append({"name": name, "match": [f'alertname="{name}Alert"'], "idempotent": idempotent,
                    "cooldown": "1h",
                    "params": {"svc": {"label": "service", "pattern": "[a-z]+"}}, "target": "${svc}",
                    "steps": [{"action": "command",
                               "argv": [sys.executable, "-c", APPEND, str(tmp_path / "runs"), "${svc}"]},
                              {"action": "wait", "seconds": wait}]})
    return out


async def test_crash_mid_procedure_is_reconciled_on_start(pg_url: str, make_config: Any,
                                                          start_remediator: Any, start_process: Any,
                                                          tmp_path: Path, secrets_dir: Path) -> None:
    # pg_url first: fixtures tear down in reverse, so the app stops before its schema is dropped
    config_path = tmp_path / "crashy.yml"
    config_path.write_text(yaml.safe_dump({
        "database_url": pg_url, "replica_id": "replica-a",
        "webhook": {"bearer_token_file": str(secrets_dir / "webhook-token")},
        "procedures": procedures(tmp_path, "10m")}))
    port = free_port()
    proc = start_process(ManagedProcess(
        name="remediator", log_path=tmp_path / "remediator.log",
        argv=[sys.executable, "-m", "vigil.remediator.service", f"--config.file={config_path}",
              f"--web.listen-address=127.0.0.1:{port}"],
        ready_url=f"http://127.0.0.1:{port}/-/ready"))
    body = notification(alert("againAlert", "aa", labels={"service": "x"}),
                        alert("onceAlert", "bb", labels={"service": "y"}))
    resp = await asyncio.to_thread(requests.post, f"http://127.0.0.1:{port}/api/v1/alerts",
                                   json=body, headers=WEBHOOK_AUTH, timeout=10)
    assert resp.status_code == 200, resp.text
    store = Store(pg_url)

    def both_running() -> bool:
        rows = store.list_incidents()
        states = [a["state"] for r in rows for a in (store.timeline(r["id"]) or {})["attempts"]]
        return states == ["running", "running"]

    wait_for(both_running, timeout=30, what="both procedures to be running")
    wait_for(lambda: len((tmp_path / "runs").read_text().split()) == 2, what="first steps ran")
    proc.kill()  # SIGKILL: no clean-up at all
    store.dispose()

    # the replacement (same replica id, as a restarted pod would have) reconciles on start
    config = make_config(procedures(tmp_path, "0s"), replica_id="replica-a")
    client = await start_remediator(config, pg_url)

    async def settled() -> Any:
        rows = {r["fingerprint"]: r["state"] for r in await incidents(client)}
        return rows if rows == {"aa": "resolved", "bb": "escalated"} else None

    await wait_until(settled, what="idempotent re-run and non-idempotent escalation")
    rows = {r["fingerprint"]: r for r in await incidents(client)}
    again = await timeline(client, rows["aa"]["id"])
    assert [a["state"] for a in again["attempts"]] == ["failed", "succeeded"]
    assert "interrupted" in again["attempts"][0]["reason"]
    once = await timeline(client, rows["bb"]["id"])
    assert [a["state"] for a in once["attempts"]] == ["failed"]
    assert "not idempotent" in rows["bb"]["reason"]
    assert sorted((tmp_path / "runs").read_text().split()) == ["x", "x", "y"]


async def test_shutdown_mid_run_is_taken_over_by_another_replica(
        make_config: Any, start_remediator: Any, tmp_path: Path) -> None:
    """A replica stops mid-run; another one sees the heartbeat go stale and re-runs it."""
    first = await start_remediator(make_config(procedures(tmp_path, "10m"), replica_id="a"))
    from tests.remediator.conftest import post

    await post(first, notification(alert("againAlert", "cc", labels={"service": "z"})))

    async def running() -> bool:
        rows = await incidents(first)
        return bool(rows) and [a["state"] for a in (await timeline(first, rows[0]["id"]))["attempts"]] == ["running"]

    await wait_until(running, what="the first replica to run it")
    await first.close()  # graceful stop: the attempt stays `running`, like a crash
    second = await start_remediator(make_config(procedures(tmp_path, "0s"), replica_id="b",
                                                stale_after="1s"))

    async def resolved() -> Any:
        rows = await incidents(second)
        return rows[0] if rows[0]["state"] == "resolved" else None

    inc = await wait_until(resolved, what="the second replica to take over")
    attempts = (await timeline(second, inc["id"]))["attempts"]
    assert [(a["state"], a["replica"]) for a in attempts] == [("failed", "a"), ("succeeded", "b")]
    assert (tmp_path / "runs").read_text().split() == ["z", "z"]


async def test_incidents_left_remediating_after_their_attempt_ended_are_repaired(
        make_config: Any, start_remediator: Any, webhook_receiver: Any) -> None:
    """What two transactions (the attempt's end, then the incident's move) left after a crash
    between them: the attempt ended, the incident `remediating` for good. Start-up repairs
    each by the attempt's end; a live run elsewhere is left alone but counted as stuck."""
    import sqlalchemy as sa
    from vigil.remediator.matching import match_alert
    from vigil.remediator.models import Incident
    from vigil.remediator.payload import parse_payload
    from vigil.remediator.store import utcnow

    proc = {"name": "fix", "match": ['alertname="fixAlert"'], "cooldown": 0, "time_bound": "1s",
            "params": {"svc": {"label": "service", "pattern": "[a-z0-9]+"}}, "target": "${svc}",
            "steps": [{"action": "wait", "seconds": 0}]}
    config = make_config([proc], escalation={"url": webhook_receiver.url})
    store = Store(config.resolved_database_url())
    store.migrate()
    parsed = parse_payload(notification(*(alert("fixAlert", f"a{i}", labels={"service": f"s{i}"})
                                          for i in range(1, 5))))
    store.ingest([(parsed, [match_alert(config, a.as_dict()) for a in parsed.alerts], False)])
    ids = {r["fingerprint"]: r["id"] for r in store.list_incidents()}
    ended = {"a1": ("succeeded", ""), "a2": ("rolled_back", "step restart failed: exited with 1"),
             "a3": ("failed", "interrupted: the remediator stopped while it was running")}
    for fp in ("a1", "a2", "a3", "a4"):
        verdict, attempt_id = store.claim(
            ids[fp], procedure="fix", target=f"s{fp[1]}", cooldown=0, max_attempts=3, window=3600,
            dry_run=False, replica="test-replica" if fp in ended else "live-elsewhere",
            ignore_cooldown=False)
        assert verdict == "claimed"
        if fp in ended:
            state, reason = ended[fp]
            store.update_attempt(attempt_id, state=state, reason=reason, finished_at=utcnow())
    with store.engine.begin() as conn:  # a4 runs on a live replica, but for an hour now
        conn.execute(sa.update(Incident).where(Incident.id == ids["a4"])
                     .values(updated_at=utcnow() - timedelta(hours=1)))
    store.dispose()

    client = await start_remediator(config)

    async def repaired() -> Any:
        rows = {r["fingerprint"]: r["state"] for r in await incidents(client)}
        want = {"a1": "resolved", "a2": "escalated", "a3": "escalated", "a4": "remediating"}
        return rows if rows == want else None

    await wait_until(repaired, what="the ended attempts' incidents to move on")
    rows = {r["fingerprint"]: r for r in await incidents(client)}
    assert "repaired" in rows["a1"]["reason"] and "step restart failed" in rows["a2"]["reason"]
    assert "not idempotent" in rows["a3"]["reason"]
    await wait_until(lambda: len(webhook_receiver.received) == 2, what="two escalations")
    assert sorted(e["incident"] for e in webhook_receiver.received) == sorted([ids["a2"], ids["a3"]])
    a3 = await timeline(client, ids["a3"])
    assert [a["state"] for a in a3["attempts"]] == ["failed"]  # not run again
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_stuck_incidents{procedure="fix"} 1.0' in metrics
