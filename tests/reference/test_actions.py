"""Each recovery procedure of deploy/reference/procedures.yml, run step by step through the
remediator's own action library against the real systems of the reference stack: a killed and
a hung app under supervisord, idle PostgreSQL backends, a filling tmpfs spool, a drifted
kinto.ini. The procedures' verification queries are then read from the real Prometheus."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg2
import pytest
import requests
from vigil.demo.reference import ReferenceStack
from vigil.remediator.actions import ActionContext, run_step
from vigil.remediator.breaker import Breakers
from vigil.remediator.config import RemediatorConfig, load_config
from vigil.remediator.matching import match_alert
from vigil.remediator.templating import render

from tests.harness import in_ci, prom_value, wait_for


@pytest.fixture(scope="module", autouse=True)
def silenced(reference: ReferenceStack) -> Iterator[None]:
    """Silence the stack's alerts in its real Alertmanager while these tests run the
    procedures themselves, so that the stack's remediator does not run them at the same time."""
    now = datetime.now(UTC)
    resp = requests.post(f"{reference.url('alertmanager')}/api/v2/silences", timeout=5, json={
        "matchers": [{"name": "alertname", "value": "Reference.+|Target.+", "isRegex": True, "isEqual": True}],
        "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "tests", "comment": "the action tests run the procedures"})
    resp.raise_for_status()
    yield
    requests.delete(f"{reference.url('alertmanager')}/api/v2/silence/{resp.json()['silenceID']}",
                    timeout=5)


def _config(stack: ReferenceStack) -> RemediatorConfig:
    return load_config(stack.workdir / "config" / "remediator.yml")


def run_procedure(stack: ReferenceStack, labels: dict[str, str]) -> tuple[str, list[str]]:
    """Match an alert with these labels the way the remediator does, run the procedure's
    steps, and wait until its verification query holds in Prometheus."""
    config = _config(stack)
    match = match_alert(config, {"labels": labels, "fingerprint": "abc123"})
    assert match.procedure is not None and not match.refused, match
    params = {**config.constants, **match.params}

    async def steps() -> list[str]:
        async with aiohttp.ClientSession() as session:
            ctx = ActionContext(config=config, session=session, breakers=Breakers(), params=params)
            try:
                return [await run_step(step, ctx) for step in match.procedure.steps]  # type: ignore[union-attr]
            finally:
                for engine in ctx.sql_engines.values():
                    engine.dispose()

    outputs = asyncio.run(steps())
    assert match.procedure.verify is not None
    query = render(match.procedure.verify.query, params)
    wait_for(lambda: stack.query(query), timeout=60, interval=1, what=f"verification {query}")
    return match.procedure.name, outputs


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_params_are_refused_unless_they_match(reference: ReferenceStack) -> None:
    config = _config(reference)
    match = match_alert(config, {"labels": {"alertname": "TargetProbeFailing", "probe": "health",
                                            "program": "kinto; rm -rf /"}, "fingerprint": "ab"})
    assert match.procedure is not None and match.refused and "program" in match.refused
    assert "rm -rf" not in match.refused  # the value is never echoed


def test_supervisorctl_restarts_a_killed_app(reference: ReferenceStack) -> None:
    pid = reference.program_pid("datasette")
    os.kill(pid, signal.SIGKILL)
    health = f"{reference.url('datasette')}/-/versions.json"
    wait_for(lambda: "EXITED" in reference.supervisorctl("status", "datasette", check=False),
             what="supervisord to see datasette exit")
    assert not _answers(health)
    name, outputs = run_procedure(reference, {"alertname": "TargetProbeFailing", "probe": "health",
                                                   "program": "datasette"})
    assert name == "restart-unresponsive-app"
    assert "datasette: started" in outputs[0]
    assert reference.program_pid("datasette") != pid
    assert _answers(health)


def test_supervisorctl_restarts_a_hung_app(reference: ReferenceStack) -> None:
    pid = reference.program_pid("kinto")
    os.kill(pid, signal.SIGSTOP)
    heartbeat = f"{reference.url('kinto')}/v1/__heartbeat__"
    try:
        assert not _answers(heartbeat)
        assert "RUNNING" in reference.supervisorctl("status", "kinto")  # alive to supervisord
        wait_for(lambda: prom_value(reference.url("prometheus"),
                                    'probe_success{probe="health",program="kinto"}') == 0,
                 timeout=20, what="the blackbox probe to see kinto hang")
        run_procedure(reference, {"alertname": "TargetProbeFailing", "probe": "health", "program": "kinto"})
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert reference.program_pid("kinto") != pid
    assert _answers(heartbeat)


def test_idle_backends_are_terminated_near_the_limit(reference: ReferenceStack) -> None:
    held = [psycopg2.connect(reference.kinto_database_url, connect_timeout=5) for _ in range(8)]
    try:
        # a session of the same role inside a transaction is not idle: it must survive
        busy = psycopg2.connect(reference.kinto_database_url, connect_timeout=5)
        with busy.cursor() as cur:
            cur.execute("SELECT 1")
        wait_for(lambda: (prom_value(reference.url("prometheus"),
                                     f'sum(pg_stat_activity_count{{datname="{reference.name}",'
                                     'state="idle"})') or 0) >= 8,
                 timeout=20, what="postgres_exporter to count the idle connections")
        time.sleep(2)  # the statement spares backends idle for under a second (just returned to a pool)
        name, outputs = run_procedure(reference, {"alertname": "ReferenceDbConnectionsNearLimit",
                                                  "datname": reference.name})
        assert name == "terminate-idle-db-connections"
        terminated = int(outputs[0].split("[[")[1].split("]]")[0])
        assert terminated >= 8, outputs
        for conn in held:
            with pytest.raises(psycopg2.OperationalError), conn.cursor() as cur:
                cur.execute("SELECT 1")
        with busy.cursor() as cur:
            cur.execute("SELECT 1")
        busy.close()
        # Kinto's pool reconnects: it serves again
        wait_for(lambda: _answers(f"{reference.url('kinto')}/v1/__heartbeat__"), timeout=30,
                 what="kinto to serve after its idle backends were terminated")
    finally:
        for conn in held:
            conn.close()


def test_spool_is_cleaned_as_the_filesystem_fills(reference: ReferenceStack) -> None:
    if not reference.spool_mounted:
        msg = "the spool tmpfs needs root to mount"
        if in_ci():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    keep = reference.spool_dir / "keep.txt"
    keep.write_text("not a spool file")
    chunk = os.urandom(1024 * 1024)
    for n in range(50):  # 50 of 64 MiB
        (reference.spool_dir / f"batch-{n:03d}.spool").write_bytes(chunk)
    ratio = (f'node_filesystem_avail_bytes{{mountpoint="{reference.spool_dir}"}} / '
             f'node_filesystem_size_bytes{{mountpoint="{reference.spool_dir}"}}')
    wait_for(lambda: (prom_value(reference.url("prometheus"), ratio) or 1) < 0.3, timeout=20,
             what="node_exporter to see the spool fill")
    name, _ = run_procedure(reference, {"alertname": "TargetDiskFillPredicted",
                                          "mountpoint": str(reference.spool_dir)})
    assert name == "clean-spool"
    assert list(reference.spool_dir.glob("*.spool")) == []
    assert keep.read_text() == "not a spool file"  # only the configured pattern goes
    keep.unlink()


def _kinto_readonly(stack: ReferenceStack) -> Any:
    return requests.get(f"{stack.url('kinto')}/v1/", timeout=5).json()["settings"]["readonly"]


def test_drifted_config_is_restored_and_the_app_reloaded(reference: ReferenceStack) -> None:
    ini = reference.kinto_ini
    ini.write_text(ini.read_text().replace("kinto.readonly = false", "kinto.readonly = true"))
    reference.supervisorctl("restart", "kinto")
    wait_for(lambda: _answers(f"{reference.url('kinto')}/v1/"), timeout=30, what="kinto up")
    assert _kinto_readonly(reference) is True  # the drift is what Kinto really serves
    name, outputs = run_procedure(reference, {"alertname": "ReferenceConfigDrift", "program": "kinto"})
    assert name == "restore-kinto-config"
    assert outputs[0].startswith("restored")
    assert ini.read_bytes() == reference.kinto_baseline.read_bytes()
    assert _kinto_readonly(reference) is False
