"""Safety rules: dry run, cooldown, attempt budget, concurrency, kill switch, approval; and
resolved alerts cancelling queued and running work."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.remediator.conftest import (
    ADMIN_AUTH,
    WEBHOOK_AUTH,
    alert,
    count_rows,
    engine_of,
    incident_state,
    incidents,
    notification,
    post,
    procedure,
    store_of,
    timeline,
    wait_until,
)
from tests.remediator.test_actions import INSTANCE_PARAM, demo_config

GATE_SCRIPT = ("import os, sys, time\n"
               "open(sys.argv[2], 'a').write(sys.argv[3] + '\\n')\n"
               "while not os.path.exists(sys.argv[1]): time.sleep(0.05)\n")
SVC = {"svc": {"label": "service", "pattern": "[a-z0-9]+"}}


def gated(name: str, tmp_path: Path, **kw: Any) -> dict[str, Any]:
    """A procedure whose step blocks until tmp_path/gate exists, logging which target started."""
    return procedure(name, params=SVC, target="${svc}", steps=[
        {"action": "command", "timeout": "60s",
         "argv": [sys.executable, "-c", GATE_SCRIPT, str(tmp_path / "gate"), str(tmp_path / "started"),
                  "${svc}"]}], **kw)


async def attempt_states(client: Any) -> list[str]:
    out = []
    for inc in await incidents(client):
        out += [a["state"] for a in (await timeline(client, inc["id"]))["attempts"]]
    return sorted(out)


async def test_dry_run_per_procedure_executes_nothing(make_config: Any, start_remediator: Any,
                                                      demo_target: Any) -> None:
    proc = procedure("restart", params=INSTANCE_PARAM, dry_run=True, steps=[
        {"action": "http", "url": "http://${instance}/admin/restart", "credentials": "demo-admin"}])
    client = await start_remediator(demo_config(make_config, demo_target, [proc]))
    await post(client, notification(alert("restartAlert", "a1",
                                          labels={"instance": demo_target.host_port})))
    inc = (await incidents(client))[0]
    await wait_until(lambda: attempt_states(client), what="an attempt")
    await wait_until(lambda: _is(attempt_states(client), ["dry_run"]), what="dry run attempt")
    tl = await timeline(client, inc["id"])
    step = tl["attempts"][0]["steps"][0]
    assert step["status"] == "dry_run"
    assert f"http://{demo_target.host_port}/admin/restart" in step["output"]
    assert tl["incident"]["state"] == "open" and tl["incident"]["dry_run"] is True
    assert demo_target.metric("demo_restarts_total") == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_attempts_total{procedure="restart",result="dry_run"} 1.0' in metrics


async def _is(coro: Any, expected: Any) -> bool:
    return bool(await coro == expected)


async def test_global_dry_run(make_config: Any, start_remediator: Any, tmp_path: Path) -> None:
    client = await start_remediator(make_config([gated("g", tmp_path)], dry_run=True))
    await post(client, notification(alert("gAlert", "a2", labels={"service": "x"})))
    await wait_until(lambda: _is(attempt_states(client), ["dry_run"]), what="dry run attempt")
    assert not (tmp_path / "started").exists()


async def test_cooldown_per_target_is_separate_from_dedup(make_config: Any, start_remediator: Any,
                                                          tmp_path: Path) -> None:
    (tmp_path / "gate").write_text("")
    client = await start_remediator(make_config([gated("g", tmp_path, cooldown="1h")]))
    await post(client, notification(alert("gAlert", "b1", labels={"service": "web"})))
    await wait_until(lambda: _is(attempt_states(client), ["succeeded"]), what="first run")
    # a different alert (new fingerprint) for the same target: not a duplicate, but cooling down
    resp = await post(client, notification(alert("gAlert", "b2", labels={"service": "web", "x": "1"})))
    assert (await resp.json())["alerts"][0]["outcome"] == "new"
    await wait_until(lambda: _is(attempt_states(client), ["skipped", "succeeded"]), what="skip")
    second = next(i for i in await incidents(client) if i["fingerprint"] == "b2")
    assert second["state"] == "open" and "cooldown" in second["reason"]
    # another target is not cooling down
    await post(client, notification(alert("gAlert", "b3", labels={"service": "api"})))
    await wait_until(lambda: _is(attempt_states(client), ["skipped", "succeeded", "succeeded"]),
                     what="other target runs")
    assert (tmp_path / "started").read_text().split() == ["web", "api"]
    # the sweeper looks again but records the skip once
    await asyncio.sleep(1.2)
    assert await attempt_states(client) == ["skipped", "succeeded", "succeeded"]


async def test_attempt_budget_then_escalate(make_config: Any, start_remediator: Any,
                                            webhook_receiver: Any) -> None:
    proc = procedure("flaky", params=SVC, target="${svc}", max_attempts=2, attempts_window="1h",
                     steps=[{"action": "command", "argv": [sys.executable, "-c", "raise SystemExit(3)"]}])
    client = await start_remediator(make_config([proc], escalation={"url": webhook_receiver.url}))
    for i in range(3):
        await post(client, notification(alert("flakyAlert", f"c{i}", labels={"service": "db", "n": str(i)})))
        await wait_until(functools.partial(_state_of, client, f"c{i}", "escalated"), what=f"c{i} escalated")
    rows = {r["fingerprint"]: r for r in await incidents(client)}
    assert "exited with 3" in rows["c0"]["reason"]
    assert "attempt budget exhausted: 2 attempts" in rows["c2"]["reason"]
    assert await attempt_states(client) == ["failed", "failed", "skipped"]
    await wait_until(lambda: len(webhook_receiver.received) == 3, what="3 escalations")
    assert {n["incident"] for n in webhook_receiver.received} == {r["id"] for r in rows.values()}
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_attempts_total{procedure="flaky",result="failed"} 2.0' in metrics
    assert 'vigil_remediation_attempts_total{procedure="flaky",result="skipped"} 1.0' in metrics


async def _state_of(client: Any, fingerprint: str, state: str) -> bool:
    return any(r["fingerprint"] == fingerprint and r["state"] == state for r in await incidents(client))


async def test_concurrency_per_procedure_and_global(make_config: Any, start_remediator: Any,
                                                    tmp_path: Path) -> None:
    procs = [gated("one", tmp_path, max_concurrent=1), gated("two", tmp_path, max_concurrent=5)]
    client = await start_remediator(make_config(procs, max_concurrent=2))
    for i in range(3):
        await post(client, notification(alert("oneAlert", f"d{i}", labels={"service": f"a{i}"})))
    await wait_until(lambda: _is(attempt_states(client), ["queued", "queued", "running"]),
                     what="one running, two queued (per-procedure limit 1)")
    for i in range(3):
        await post(client, notification(alert("twoAlert", f"e{i}", labels={"service": f"b{i}"})))
    # global limit 2: one slot left for procedure "two"
    await wait_until(lambda: _is(attempt_states(client), ["queued"] * 4 + ["running"] * 2),
                     what="global limit 2")
    await asyncio.sleep(0.5)
    assert (await attempt_states(client)).count("running") == 2
    metrics = await (await client.get("/metrics")).text()
    assert "vigil_remediations_in_progress 2.0" in metrics
    (tmp_path / "gate").write_text("")
    await wait_until(lambda: _is(attempt_states(client), ["succeeded"] * 6), what="all done")


async def test_kill_switch_pauses_and_resume_runs(make_config: Any, start_remediator: Any,
                                                  tmp_path: Path) -> None:
    (tmp_path / "gate").write_text("")
    client = await start_remediator(make_config([gated("g", tmp_path)]))
    resp = await client.post("/api/v1/control/pause", headers=ADMIN_AUTH)
    assert resp.status == 200 and (await resp.json())["paused"] is True
    await post(client, notification(alert("gAlert", "f1", labels={"service": "web"})))
    await wait_until(lambda: _is(attempt_states(client), ["skipped"]), what="skip while paused")
    inc = (await incidents(client))[0]
    assert inc["state"] == "open" and "kill switch" in inc["reason"]
    assert not (tmp_path / "started").exists()
    assert (await (await client.get("/api/v1/control", headers=ADMIN_AUTH)).json())["paused"] is True
    resp = await client.post("/api/v1/control/resume", headers=ADMIN_AUTH)
    assert resp.status == 200
    await wait_until(lambda: _state_of(client, "f1", "resolved"), what="runs after resume")
    assert (tmp_path / "started").read_text().split() == ["web"]
    assert store_of(client).paused() is False
    resp = await client.get(f"/api/v1/incidents/{inc['id']}", headers=ADMIN_AUTH)
    events = [e["event"] for e in (await resp.json())["timeline"]]
    assert events[0] == "attempt.skipped" and "attempt.succeeded" in events and "incident.state" in events
    assert count_rows(store_of(client), "audit_log WHERE action IN ('control.pause', 'control.resume')") == 2


async def test_requires_approval(make_config: Any, start_remediator: Any, tmp_path: Path) -> None:
    (tmp_path / "gate").write_text("")
    client = await start_remediator(make_config([gated("g", tmp_path, requires_approval=True)]))
    await post(client, notification(alert("gAlert", "a7", labels={"service": "web"})))
    await wait_until(lambda: _state_of(client, "a7", "awaiting_approval"), what="awaiting approval")
    inc = (await incidents(client))[0]
    url = f"/api/v1/incidents/{inc['id']}/approve"
    for headers in ({}, WEBHOOK_AUTH, {"Authorization": "Bearer nope"}):
        assert (await client.post(url, headers=headers)).status == 401
    await asyncio.sleep(0.3)
    assert await incident_state(client, inc["id"]) == "awaiting_approval"
    assert not (tmp_path / "started").exists()
    resp = await client.post(url, headers=ADMIN_AUTH)
    assert resp.status == 202
    await wait_until(lambda: _state_of(client, "a7", "resolved"), what="runs after approval")
    row = (await incidents(client))[0]
    assert row["approved_by"] == "admin:token" and row["approved_at"] is not None
    assert (await client.post(url, headers=ADMIN_AUTH)).status == 409
    assert (await client.post("/api/v1/incidents/999/approve", headers=ADMIN_AUTH)).status == 404


async def test_resolved_alert_stops_running_and_cancels_queued(make_config: Any,
                                                               start_remediator: Any,
                                                               tmp_path: Path) -> None:
    waiting = procedure("slow", params=SVC, target="${svc}", max_concurrent=1,
                        steps=[{"action": "wait", "seconds": "60s"},
                               {"action": "command", "argv": ["touch", str(tmp_path / "after")]}])
    client = await start_remediator(make_config([waiting]))
    await post(client, notification(alert("slowAlert", "aa", labels={"service": "a"}),
                                    alert("slowAlert", "bb", labels={"service": "b"})))
    await wait_until(lambda: _is(attempt_states(client), ["queued", "running"]), what="one runs")
    by_state = {}
    for inc in await incidents(client):
        by_state[(await timeline(client, inc["id"]))["attempts"][0]["state"]] = inc
    running, queued = by_state["running"], by_state["queued"]

    def resolved(inc: dict[str, Any]) -> dict[str, Any]:
        return notification(alert("slowAlert", inc["fingerprint"], status="resolved",
                                  labels={"service": inc["params"]["svc"]}))

    # resolve the queued one first: it leaves the queue without running
    resp = await post(client, resolved(queued))
    assert (await resp.json())["alerts"][0]["outcome"] == "resolved"
    await wait_until(lambda: _is(attempt_states(client), ["cancelled", "running"]), what="cancel queued")
    # resolve the running one: the wait step is told to stop
    await post(client, resolved(running))
    await wait_until(lambda: _is(attempt_states(client), ["cancelled", "cancelled"]), what="stop running")
    tl = await timeline(client, running["id"])
    assert tl["incident"]["state"] == "resolved"
    assert [s["status"] for s in tl["attempts"][0]["steps"]] == ["cancelled"]
    assert (await timeline(client, queued["id"]))["attempts"][0]["started_at"] is None
    assert not (tmp_path / "after").exists()
    assert engine_of(client).tasks == {}


async def test_unreadable_escalation_credentials_fail_loudly_and_send_nothing(
        make_config: Any, start_remediator: Any, webhook_receiver: Any, tmp_path: Path,
        caplog: Any) -> None:
    """The escalation never goes out without its credentials: unreadable token file ->
    nothing sent, the incident `failed`, an error logged (naming the file, not the token)
    and vigil_remediation_escalation_failures_total{reason="credentials"} counted."""
    token_file = tmp_path / "pager-token"
    token_file.write_text("pager-secret-value\n")
    proc = procedure("broken", params=SVC, target="${svc}",
                     steps=[{"action": "command", "argv": [sys.executable, "-c", "raise SystemExit(3)"]}])
    client = await start_remediator(make_config(
        [proc], escalation={"url": webhook_receiver.url, "credentials": "pager"},
        credentials={"pager": {"bearer_token_file": str(token_file)}}))
    await post(client, notification(alert("brokenAlert", "c0", labels={"service": "a"})))
    await wait_until(functools.partial(_state_of, client, "c0", "escalated"), what="c0 escalated")
    assert [h.get("Authorization") for h in webhook_receiver.headers] == ["Bearer pager-secret-value"]

    breakers: list[Callable[[], object]] = [token_file.unlink, lambda: token_file.write_text("\n")]
    for i, break_it in enumerate(breakers, 1):
        break_it()  # gone, then empty: either way the escalation must not go out
        await post(client, notification(alert("brokenAlert", f"c{i}", labels={"service": f"b{i}"})))
        await wait_until(functools.partial(_state_of, client, f"c{i}", "failed"), what=f"c{i} failed")
    assert len(webhook_receiver.received) == 1, "an escalation went out without its credentials"
    rows = {r["fingerprint"]: r for r in await incidents(client)}
    assert all("(no escalation delivered)" in rows[f"c{i}"]["reason"] for i in (1, 2))
    audit = (await timeline(client, rows["c1"]["id"]))["audit"]
    failed = [a["detail"]["status"] for a in audit if a["action"] == "escalation.failed"]
    assert len(failed) == 1 and "cannot be read" in failed[0] and str(token_file) in failed[0]
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_escalation_failures_total{reason="credentials"} 2.0' in metrics
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"
              and "escalation of incident" in r.getMessage()]
    assert len(errors) == 2 and all("pager" in e and str(token_file) in e for e in errors)
    assert "is empty" in errors[1]
    assert "pager-secret-value" not in caplog.text + metrics + str(failed)


async def test_blast_radius_escalates_once_instead_of_queuing(
        pg_url: str, make_config: Any, start_remediator: Any, webhook_receiver: Any) -> None:
    """At most N targets at once and M per hour, fleet-wide; past either, the incident is
    escalated (not queued), and one escalation reports how many were held."""
    wide = procedure("wide", params=SVC, target="${svc}", max_concurrent=4,
                     blast_radius={"max_targets": 2}, steps=[{"action": "wait", "seconds": 1}])
    hourly = procedure("hourly", params=SVC, target="${svc}",
                       blast_radius={"max_per_hour": 3}, steps=[{"action": "wait", "seconds": 0}])
    client = await start_remediator(make_config([wide, hourly], max_concurrent=8,
                                                escalation={"url": webhook_receiver.url}),
                                    pg_url)
    await post(client, notification(*(alert("wideAlert", f"a{i}", labels={"service": f"w{i}"})
                                      for i in range(6))))
    for i in range(5):  # one after the other: the hourly limit, not the one at once, holds
        await post(client, notification(alert("hourlyAlert", f"b{i}", labels={"service": f"h{i}"})))
        await wait_until(functools.partial(_settled, client, f"b{i}"), what=f"b{i} settled")

    async def all_settled() -> Any:
        rows = await incidents(client)
        return rows if len(rows) == 11 and all(r["state"] in ("resolved", "escalated")
                                               for r in rows) else None

    rows = await wait_until(all_settled, what="every incident resolved or held")
    by_proc: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for r in rows:
        by_proc.setdefault(r["procedure"], {}).setdefault(r["state"], []).append(r)
    assert len(by_proc["wide"]["resolved"]) == 2 and len(by_proc["wide"]["escalated"]) == 4
    assert all("already remediating (max_targets 2)" in r["reason"] for r in by_proc["wide"]["escalated"])
    assert len(by_proc["hourly"]["resolved"]) == 3 and len(by_proc["hourly"]["escalated"]) == 2
    assert all("started within the last hour (max_per_hour 3)" in r["reason"]
               for r in by_proc["hourly"]["escalated"])
    held = {p: sorted(r["id"] for r in states["escalated"]) for p, states in by_proc.items()}
    await wait_until(lambda: len(webhook_receiver.received) == 2, what="one notice per procedure")
    await asyncio.sleep(0.5)
    notices = {n["procedure"]: n for n in webhook_receiver.received}
    assert len(webhook_receiver.received) == 2, webhook_receiver.received  # once, not per incident
    for name in ("wide", "hourly"):
        assert notices[name]["kind"] == "blast_radius"
        assert notices[name]["held"] == len(held[name]) and notices[name]["incidents"] == held[name]
    held_attempts = [a for r in by_proc["wide"]["escalated"]
                     for a in (await timeline(client, r["id"]))["attempts"]]
    assert held_attempts == []  # held, never queued
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_remediation_blast_radius_held_total{procedure="wide"} 4.0' in metrics
    assert 'vigil_remediation_blast_radius_held_total{procedure="hourly"} 2.0' in metrics


async def _settled(client: Any, fingerprint: str) -> bool:
    rows = await incidents(client)
    return any(r["fingerprint"] == fingerprint and r["state"] in ("resolved", "escalated")
               for r in rows)
