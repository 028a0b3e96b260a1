"""Every action kind, run by the real app against real things: the demo target over HTTP, real
subprocesses, a real PostgreSQL session, a real Alertmanager."""

from __future__ import annotations

import asyncio
import json
import stat
import sys
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from vigil.remediator.store import normalise_url

from tests.remediator.conftest import (
    alert,
    incidents,
    notification,
    post,
    procedure,
    timeline,
    wait_until,
)
from vigil.procs import alertmanager_config

INSTANCE_PARAM = {"instance": {"label": "instance", "pattern": r"127\.0\.0\.1:[0-9]{1,5}"}}


def demo_config(make_config: Any, demo_target: Any, procs: list[dict[str, Any]], **kw: Any) -> Any:
    return make_config(procs, credentials={
        "demo-admin": {"bearer_token_file": str(demo_target.admin_token_file)}}, **kw)


async def run_one(client: Any, fingerprint: str, name: str, labels: dict[str, str] | None = None,
                  final: tuple[str, ...] = ("resolved", "escalated", "failed")) -> dict[str, Any]:
    resp = await post(client, notification(alert(name, fingerprint, labels=labels)))
    assert resp.status == 200, await resp.text()

    async def done() -> Any:
        rows = [r for r in await incidents(client) if r["fingerprint"] == fingerprint]
        return rows[0] if rows and rows[0]["state"] in final else None

    inc = await wait_until(done, what=f"incident {fingerprint} to finish")
    return await timeline(client, inc["id"])


async def test_http_restart_and_circuit_breaker_on_demo_target(
        make_config: Any, start_remediator: Any, demo_target: Any) -> None:
    demo_target.inject(memory_growth_bytes_per_second=2_000_000)
    proc = procedure("restart", params=INSTANCE_PARAM, target="${instance}", steps=[
        {"action": "http", "method": "POST", "url": "http://${instance}/admin/restart",
         "credentials": "demo-admin"},
        {"action": "circuit_breaker", "url": "http://${instance}/admin/circuit-breaker",
         "state": "open", "credentials": "demo-admin"},
    ])
    client = await start_remediator(demo_config(make_config, demo_target, [proc]))
    tl = await run_one(client, "b1", "restartAlert", {"instance": demo_target.host_port})
    assert tl["incident"]["state"] == "resolved", tl
    attempt = tl["attempts"][0]
    assert attempt["state"] == "succeeded" and attempt["verification"] == "skipped"
    assert [s["status"] for s in attempt["steps"]] == ["ok", "ok"]
    assert demo_target.metric("demo_restarts_total") == 1
    assert demo_target.metric("demo_circuit_breaker_open") == 1
    # the token never lands in the store
    assert demo_target.admin_token not in json.dumps(tl, default=str)


async def test_http_failure_is_retried_then_fails(make_config: Any, start_remediator: Any,
                                                  demo_target: Any, tmp_path: Path) -> None:
    (tmp_path / "wrong").write_text("not-the-token")
    proc = procedure("restart", params=INSTANCE_PARAM, steps=[
        {"action": "http", "url": "http://${instance}/admin/restart", "credentials": "bad",
         "retries": 1, "retry_backoff": "10ms"}])
    client = await start_remediator(make_config(
        [proc], credentials={"bad": {"bearer_token_file": str(tmp_path / "wrong")}}))
    tl = await run_one(client, "b2", "restartAlert", {"instance": demo_target.host_port})
    step = tl["attempts"][0]["steps"][0]
    assert step["status"] == "failed"
    assert "HTTP 401" in step["output"] or "HTTP 403" in step["output"]
    assert "(after 2 tries)" not in step["output"]  # a 4xx is not retried
    assert tl["incident"]["state"] == "failed"  # no escalation configured
    assert demo_target.metric("demo_restarts_total") == 0


async def test_config_restore_fixes_drift(make_config: Any, start_remediator: Any,
                                          demo_target: Any) -> None:
    demo_target.inject(cors_drift=True)
    await wait_until(lambda: demo_target.metric("demo_config_drift") == 1, what="drift")
    state = demo_target.state_dir
    proc = procedure("restore", params=INSTANCE_PARAM, steps=[
        {"action": "config_restore", "baseline": "${state}/config.baseline.yaml",
         "live": "${state}/config.yaml", "reload_url": "http://${instance}/admin/config/reload",
         "credentials": "demo-admin"}])
    client = await start_remediator(demo_config(make_config, demo_target, [proc],
                                                constants={"state": str(state)}))
    tl = await run_one(client, "c1", "restoreAlert", {"instance": demo_target.host_port})
    assert tl["incident"]["state"] == "resolved", tl
    assert (state / "config.yaml").read_bytes() == (state / "config.baseline.yaml").read_bytes()
    assert demo_target.metric("demo_config_drift") == 0


async def test_command_is_argv_with_env_allow_list(make_config: Any, start_remediator: Any,
                                                   tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("ALLOWED_VAR", "yes")
    monkeypatch.setenv("SECRET_VAR", "must-not-leak")
    out = tmp_path / "out.txt"
    script = ("import os, sys; open(sys.argv[1], 'w').write("
              "'|'.join([sys.argv[2], os.environ.get('ALLOWED_VAR', '-'), "
              "os.environ.get('SECRET_VAR', '-'), os.environ.get('STATIC', '-')]))")
    proc = procedure("cmd", params={"svc": {"label": "service", "pattern": "[a-z]+"}}, steps=[
        {"action": "command", "argv": [sys.executable, "-c", script, str(out), "${svc}"],
         "env_allow": ["ALLOWED_VAR"], "env": {"STATIC": "s-${svc}"}}])
    client = await start_remediator(make_config([proc]))
    tl = await run_one(client, "d1", "cmdAlert", {"service": "web"})
    assert tl["attempts"][0]["state"] == "succeeded", tl
    assert out.read_text() == "web|yes|-|s-web"


async def test_command_timeout_fails_the_step(make_config: Any, start_remediator: Any) -> None:
    proc = procedure("slow", steps=[{"action": "command", "timeout": "300ms",
                                     "argv": [sys.executable, "-c", "import time; time.sleep(30)"]}])
    client = await start_remediator(make_config([proc]))
    tl = await run_one(client, "d2", "slowAlert")
    step = tl["attempts"][0]["steps"][0]
    assert step["status"] == "failed" and "timed out" in step["output"]


async def test_shell_metacharacters_in_a_label_are_refused(make_config: Any, start_remediator: Any,
                                                           tmp_path: Path) -> None:
    pwned = tmp_path / "pwned"
    proc = procedure("cmd", params={"svc": {"label": "service", "pattern": "[a-z]+"}}, steps=[
        {"action": "command", "argv": ["echo", "${svc}"]}])
    client = await start_remediator(make_config([proc]))
    resp = await post(client, notification(alert("cmdAlert", "e1",
                                                  labels={"service": f"web; touch {pwned}"})))
    assert (await resp.json())["alerts"][0]["outcome"] == "new"
    rows = await incidents(client)
    assert rows[0]["state"] == "escalated"
    assert "refused: parameter 'svc'" in rows[0]["reason"]
    assert "touch" not in rows[0]["reason"]  # the value is never echoed
    await asyncio.sleep(0.3)
    assert (await timeline(client, rows[0]["id"]))["attempts"] == []
    assert not pwned.exists()


async def test_sql_terminates_idle_connections_with_binds(make_config: Any, start_remediator: Any,
                                                          pg_url: str) -> None:
    victim_engine = sa.create_engine(normalise_url(pg_url), connect_args={"application_name": "leaky-app"})
    victim = victim_engine.connect()
    victim.execute(sa.text("SELECT 1"))
    victim.commit()  # idle, not in a transaction
    pid = victim.execute(sa.text("SELECT pg_backend_pid()")).scalar()
    victim.commit()
    proc = procedure("terminate", params={"app": {"label": "app", "pattern": "[a-z-]+"}}, steps=[
        {"action": "sql", "database": "app",
         "statement": "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = :app AND state = 'idle'"}])
    client = await start_remediator(make_config([proc], databases={"app": {"url": pg_url}}))
    tl = await run_one(client, "f1", "terminateAlert", {"app": "leaky-app"})
    assert tl["attempts"][0]["state"] == "succeeded", tl
    assert "1 row(s)" in tl["attempts"][0]["steps"][0]["output"]
    with victim_engine.connect() as check:
        alive = check.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                              {"p": pid}).scalar()
    assert alive == 0
    victim.invalidate()
    victim_engine.dispose()


def fake_binary(tmp_path: Path, name: str) -> tuple[str, Path]:
    log = tmp_path / f"{name}.argv"
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport json, sys\n"
                    f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path), log


async def test_service_restarts_run_argv(make_config: Any, start_remediator: Any, tmp_path: Path) -> None:
    binaries = {}
    logs = {}
    for name in ("systemctl", "kubectl", "docker"):
        binaries[name], logs[name] = fake_binary(tmp_path, name)
    params = {"svc": {"label": "service", "pattern": "[a-z][a-z0-9-]*"}}
    proc = procedure("svc", params=params, steps=[
        {"action": "systemd_restart", "unit": "${svc}.service"},
        {"action": "kubernetes_rollout_restart", "resource": "deployment/${svc}", "namespace": "prod"},
        {"action": "docker_restart", "container": "${svc}", "stop_timeout": 5}])
    client = await start_remediator(make_config([proc], binaries=binaries))
    tl = await run_one(client, "a9", "svcAlert", {"service": "web-1"})
    assert tl["attempts"][0]["state"] == "succeeded", tl
    assert json.loads(logs["systemctl"].read_text()) == ["restart", "--", "web-1.service"]
    assert json.loads(logs["kubectl"].read_text()) == ["--namespace", "prod", "rollout", "restart",
                                                       "deployment/web-1"]
    assert json.loads(logs["docker"].read_text()) == ["restart", "--time", "5", "--", "web-1"]


async def test_silence_held_while_running_then_expired(make_config: Any, start_remediator: Any,
                                                       alertmanager_factory: Any) -> None:
    _, am_url = alertmanager_factory(alertmanager_config(None))
    proc = procedure("quiet", params=INSTANCE_PARAM, steps=[
        {"action": "silence", "duration": "10m", "matchers": ['instance="${instance}"']},
        {"action": "wait", "seconds": "2s"}])
    client = await start_remediator(make_config([proc], alertmanager_url=am_url))
    resp = await post(client, notification(alert("quietAlert", "ab", labels={"instance": "127.0.0.1:1"})))
    assert resp.status == 200

    def silences(state: str) -> list[dict[str, Any]]:
        body = requests.get(f"{am_url}/api/v2/silences", timeout=5).json()
        return [s for s in body if s["status"]["state"] == state]

    active = await wait_until(lambda: silences("active"), what="an active silence")
    assert active[0]["matchers"][0]["value"] == "127.0.0.1:1"
    assert active[0]["createdBy"] == "vigil-remediator"
    inc = (await incidents(client))[0]
    await wait_until(lambda: silences("expired"), what="the silence to expire")
    assert silences("active") == []
    # Alertmanager shows the silence expired a moment before the attempt row records the
    # expiring step: wait for the attempt to finish rather than read it mid-write.
    async def finished() -> Any:
        tl = await timeline(client, inc["id"])
        return tl if tl["attempts"] and tl["attempts"][0]["finished_at"] else None

    tl = await wait_until(finished, what="the attempt to finish")
    assert [s["name"] for s in tl["attempts"][0]["steps"]] == ["1-silence", "2-wait", "expire-silences"]


async def test_http_5xx_is_retried_and_the_host_breaker_opens(make_config: Any,
                                                              start_remediator: Any) -> None:
    from tests.harness import WebhookReceiver

    sink = WebhookReceiver(status=503).start()
    try:
        proc = procedure("notify", params={"n": {"label": "n", "pattern": "[0-9]"}}, target="${n}",
                         steps=[{"action": "http", "url": sink.url, "body": {"n": "${n}"},
                                 "retries": 2, "retry_backoff": "10ms"}])
        client = await start_remediator(make_config([proc]))
        tl = await run_one(client, "e1", "notifyAlert", {"n": "1"})
        assert "HTTP 503" in tl["attempts"][0]["steps"][0]["output"]
        assert "(after 3 tries)" in tl["attempts"][0]["steps"][0]["output"]
        assert len(sink.received) == 3 and sink.received[0] == {"n": "1"}
        await run_one(client, "e2", "notifyAlert", {"n": "2"})  # 6 failures: the breaker opens
        tl = await run_one(client, "e3", "notifyAlert", {"n": "3"})
        assert "circuit breaker" in tl["attempts"][0]["steps"][0]["output"]
        assert len(sink.received) == 5  # opened after the 5th failure; no more calls
        metrics = await (await client.get("/metrics")).text()
        assert f'vigil_circuit_breaker_state{{breaker="127.0.0.1:{sink.port}"}} 1.0' in metrics
    finally:
        sink.stop()
