"""Replay recorded alert sequences into the real remediator on PostgreSQL, with evidence read
from a real Prometheus: the cause is ranked first, symptoms are not remediated on their own,
and a recurring signature gets the procedure that succeeded before."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from vigil.remediator import incidents_cli

from tests.harness import prom_value
from tests.intelligence.conftest import Shop
from tests.remediator.conftest import (
    ADMIN_AUTH,
    alert,
    incidents,
    notification,
    post,
    procedure,
    timeline,
    wait_until,
)
from vigil.procs import prometheus_config


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def procs(shop: str) -> list[dict[str, Any]]:
    return [
        procedure("restore-cors", match=['alertname="CorsMethodBlocked"'],
                  steps=[{"action": "http", "url": f"http://{shop}/fix-cors", "retries": 0}]),
        procedure("restart-shop", match=['alertname="TargetErrorRateHigh"'],
                  steps=[{"action": "http", "url": f"http://{shop}/restart", "retries": 0}]),
        procedure("restart-api", match=['alertname="ApiErrors"'], steps=[{"action": "wait", "seconds": 0}]),
        procedure("failover-pricing", match=['alertname="PricingDbDown"'],
                  steps=[{"action": "wait", "seconds": 1}]),
        procedure("clean-batch", match=['alertname="BatchDiskFull"'], steps=[{"action": "wait", "seconds": 0}]),
    ]


async def by_fp(client: Any, fingerprint: str) -> dict[str, Any]:
    return next(i for i in await incidents(client) if i["fingerprint"] == fingerprint)


async def details(client: Any, incident_id: int) -> dict[str, Any]:
    resp = await client.get(f"/api/v1/incidents/{incident_id}", headers=ADMIN_AUTH)
    assert resp.status == 200
    return dict(await resp.json())


async def replay_cors_round(client: Any, shop: Shop, prom: str, r: int) -> dict[str, dict[str, Any]]:
    """CORS drift on the shop, then its PATCH failures: recorded as it arrives from Alertmanager."""
    shop.break_cors()
    await wait_until(lambda: prom_value(prom, 'vigil_finding_info{check="cors"}') == 1,
                     what="finding scraped")
    await asyncio.sleep(2)  # the finding changed shortly before the alerts
    now = datetime.now(UTC)
    symptom = alert("TargetErrorRateHigh", f"5{r}", starts_at=iso(now),
                    labels={"job": "shop", "instance": shop.host_port, "severity": "warning"})
    patch = alert("PatchRequestsFailing", f"6{r}", starts_at=iso(now + timedelta(seconds=0.5)),
                  labels={"job": "shop", "severity": "warning"})
    cause = alert("CorsMethodBlocked", f"c{r}", starts_at=iso(now + timedelta(seconds=1)),
                  labels={"target": "shop", "method": "PATCH", "severity": "warning"})
    # the symptom fires first (its rule's `for` is shorter); the cause follows
    assert (await (await post(client, notification(symptom))).json())["alerts"][0]["outcome"] == "new"
    await post(client, notification(cause))
    await post(client, notification(patch))
    cause_inc = await wait_until(lambda: _final(client, f"c{r}"), what="cause remediated")
    assert cause_inc["state"] == "resolved", await timeline(client, cause_inc["id"])
    # the symptom waits for its root cause (the reason names it), it does not run on its own
    try:
        sym = await wait_until(lambda: _waiting_for(client, f"5{r}", cause_inc["id"]),
                               what="symptom waiting for its cause")
    except AssertionError:
        got = await details(client, cause_inc["id"])
        raise AssertionError(json.dumps({k: got[k] for k in ("group", "root_cause")}, default=str)
                             + json.dumps(await by_fp(client, f"5{r}"), default=str)) from None
    assert sym["state"] == "open", sym
    # the fix shows: Alertmanager resolves the symptoms
    resolved = [dict(a, status="resolved") for a in (symptom, patch)]
    await post(client, notification(*resolved))
    await wait_until(lambda: _final(client, f"5{r}"), what="symptom resolved")
    return {"cause": cause_inc, "symptom": await by_fp(client, f"5{r}"),
            "patch": await by_fp(client, f"6{r}")}


async def _waiting_for(client: Any, fp: str, cause_id: int) -> dict[str, Any] | None:
    inc = await by_fp(client, fp)
    return inc if f"incident #{cause_id}" in inc["reason"] else None


async def _final(client: Any, fp: str) -> dict[str, Any] | None:
    rows = [i for i in await incidents(client) if i["fingerprint"] == fp]
    return rows[0] if rows and rows[0]["state"] in ("resolved", "escalated", "failed") else None


async def test_cause_first_symptoms_wait_and_recurrence_gets_the_fix_that_worked(
        shop: Shop, prometheus_factory: Any, pg_url: str, make_config: Any, start_remediator: Any,
        webhook_receiver: Any) -> None:
    _, prom = prometheus_factory(prometheus_config({"shop": [shop.host_port]}))
    await wait_until(lambda: prom_value(prom, 'up{job="shop"}') == 1, what="shop scraped")
    config = make_config(procs(shop.host_port), prometheus_url=prom, escalation={"url": webhook_receiver.url},
                         intelligence={"symptom_hold": "3s", "reevaluate_after": "60s",
                                       "evidence_lookback": "2m"})
    client = await start_remediator(config, database_url=pg_url)

    first = await replay_cors_round(client, shop, prom, 1)
    cause_id = first["cause"]["id"]
    got = await details(client, first["symptom"]["id"])
    assert got["root_cause"]["incident"] == cause_id and got["root_cause"]["alertname"] == "CorsMethodBlocked"
    assert not got["root_cause"]["is_this_incident"]
    assert any(e["kind"] == "finding" and e["weight"] == 3.0 for e in got["root_cause"]["evidence"])
    assert {m["alertname"] for m in got["group"]["members"]} == {
        "TargetErrorRateHigh", "PatchRequestsFailing", "CorsMethodBlocked"}
    # the symptom with a procedure of its own never ran it: only the cause was remediated
    assert (await timeline(client, first["symptom"]["id"]))["attempts"] == []
    assert shop.fixes == ["cors"]
    # impact: measured from Prometheus once the symptom's alert resolved
    try:
        impact = await wait_until(lambda: _impact(client, first["symptom"]["id"]), what="impact")
    except AssertionError:
        raise AssertionError((await details(client, first["symptom"]["id"]))["impact"]) from None
    assert impact["failed_requests"] > 0 and impact["error_budget_burned"] > 0, impact

    # the same pattern again, later: it is recognised and gets the fix that worked
    second = await replay_cors_round(client, shop, prom, 2)
    assert second["cause"]["id"] != cause_id and shop.fixes == ["cors", "cors"]
    got = await details(client, second["cause"]["id"])
    assert got["group"]["id"] != (await details(client, cause_id))["group"]["id"]
    assert got["root_cause"]["is_this_incident"]
    assert got["recommendation"]["procedure"] == "restore-cors"
    assert got["recommendation"]["success_rate"] == 1.0
    assert got["similar"][0]["incident"] == cause_id and got["similar"][0]["fixed_by"] == "restore-cors"
    sym = await details(client, second["symptom"]["id"])
    assert sym["recommendation"]["procedure"] == "restore-cors"  # fixed via its root cause
    # the unmatched PATCH alert went to a human with the recommendation in the payload
    sent = [m for m in webhook_receiver.received if m["alertname"] == "PatchRequestsFailing"]
    assert len(sent) == 2
    assert sent[1]["recommendation"]["procedure"] == "restore-cors"
    assert sent[1]["root_cause"]["alertname"] == "CorsMethodBlocked"
    metrics = await (await client.get("/metrics")).text()
    assert ('vigil_procedure_success_ratio{procedure="restore-cors",signature="CorsMethodBlocked/-"} 1.0'
            in metrics)

    # the terminal view reads the same API
    base = str(client.make_url("")).rstrip("/")
    out = await asyncio.to_thread(_cli, base, second["cause"]["id"])
    assert "CorsMethodBlocked" in out and "restore-cors" in out and "root cause" in out


def _cli(base: str, incident_id: int) -> str:
    import contextlib
    import io
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from tests.remediator.conftest import ADMIN_TOKEN

    with TemporaryDirectory() as d:
        token = Path(d) / "t"
        token.write_text(ADMIN_TOKEN)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = incidents_cli.main(["show", str(incident_id), "--url", base,
                                       "--admin-token-file", str(token)])
        assert code == 0
        with contextlib.redirect_stdout(io.StringIO()) as raw:
            assert incidents_cli.main(["show", str(incident_id), "--url", base, "--output", "json",
                                       "--admin-token-file", str(token)]) == 0
        assert json.loads(raw.getvalue())["root_cause"]["alertname"] == "CorsMethodBlocked"
        return buf.getvalue()


async def _impact(client: Any, incident_id: int) -> dict[str, Any] | None:
    impact = (await details(client, incident_id))["impact"]
    return impact if impact and "failed_requests" in impact else None


async def test_dependency_direction_and_independent_alerts_are_not_delayed(
        pg_url: str, make_config: Any, start_remediator: Any) -> None:
    config = make_config([p for p in procs("127.0.0.1:9")
                          if p["name"] in ("restart-api", "failover-pricing", "clean-batch")],
                         intelligence={"dependencies": {"api": ["pricing"], "pricing": ["pricing-db"]},
                                       "reevaluate_after": "60s"})
    client = await start_remediator(config, database_url=pg_url)
    now = datetime.now(UTC)
    callers = alert("ApiErrors", "a1", starts_at=iso(now), labels={"service": "api"})
    db = alert("PricingDbDown", "b1", starts_at=iso(now + timedelta(seconds=20)),
               labels={"service": "pricing-db"})
    other = alert("BatchDiskFull", "d1", starts_at=iso(now + timedelta(seconds=5)),
                  labels={"service": "batch"})
    # recorded: the callers' errors and the dependency's failure arrive in one notification
    await post(client, notification(callers, db))
    await post(client, notification(other))
    root = await wait_until(lambda: _final(client, "b1"), what="dependency remediated")
    assert root["state"] == "resolved"
    independent = await wait_until(lambda: _final(client, "d1"), what="independent alert remediated")
    assert independent["state"] == "resolved"
    api = await by_fp(client, "a1")
    api = await wait_until(lambda: _waiting_for(client, "a1", root["id"]), what="callers wait")
    assert api["state"] == "open"
    assert (await timeline(client, api["id"]))["attempts"] == []
    got = await details(client, api["id"])
    assert [r["alertname"] for r in got["group"]["ranking"]] == ["PricingDbDown", "ApiErrors"]
    assert any(e["kind"] == "dependency" for e in got["root_cause"]["evidence"])
    alone = await details(client, independent["id"])
    assert len(alone["group"]["members"]) == 1 and alone["group"]["id"] != got["group"]["id"]
