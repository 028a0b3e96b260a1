"""The webhook: auth, limits, precise 4xx, dedup, mixed payloads, store outage -> 5xx."""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from typing import Any

import pytest
import sqlalchemy as sa

from tests.remediator.conftest import (
    ADMIN_AUTH,
    WEBHOOK_TOKEN,
    alert,
    count_rows,
    incidents,
    notification,
    post,
    procedure,
    store_of,
    wait_until,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'r.db'}"
    return str(request.getfixturevalue("pg_url"))


async def test_new_duplicate_and_resolved_outcomes(make_config: Any, start_remediator: Any,
                                                   database_url: str) -> None:
    client = await start_remediator(make_config([procedure("fix")], paused=True), database_url)
    payload = notification(alert("fixAlert", "aa"), alert("Other", "bb"))
    resp = await post(client, payload)
    assert resp.status == 200, await resp.text()
    assert [a["outcome"] for a in (await resp.json())["alerts"]] == ["new", "unmatched"]
    # Alertmanager HA: the same notification from a second replica
    resp = await post(client, payload)
    assert [a["outcome"] for a in (await resp.json())["alerts"]] == ["duplicate", "duplicate"]
    store = store_of(client)
    assert count_rows(store, "alerts") == 2
    assert count_rows(store, "notifications") == 2
    assert count_rows(store, "incidents") == 2
    # mixed: one resolves, one new instance of the same alert fires again later
    mixed = notification(alert("fixAlert", "aa", status="resolved"),
                         alert("fixAlert", "cc", starts_at="2026-11-26T10:05:00Z"))
    resp = await post(client, mixed)
    assert [a["outcome"] for a in (await resp.json())["alerts"]] == ["resolved", "new"]
    rows = {r["fingerprint"]: r for r in await incidents(client)}
    assert rows["aa"]["state"] == "resolved" and rows["aa"]["alert_resolved_at"] is not None
    assert rows["bb"]["state"] == "escalated" and rows["bb"]["procedure"] is None
    assert rows["cc"]["state"] == "open"
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_alerts_received_total{outcome="duplicate"} 2.0' in metrics
    assert 'vigil_alerts_received_total{outcome="unmatched"} 1.0' in metrics
    assert 'vigil_webhook_notifications_total{result="accepted"} 3.0' in metrics

    async def open_gauge() -> bool:
        return "vigil_incidents_open 1.0" in await (await client.get("/metrics")).text()

    await wait_until(open_gauge, what="vigil_incidents_open 1")


async def test_concurrent_duplicates_store_one_incident(pg_url: str, make_config: Any,
                                                        start_remediator: Any) -> None:
    # pg_url first: fixtures tear down in reverse, so the app stops before its schema is dropped
    client = await start_remediator(make_config([procedure("fix")], paused=True), pg_url)
    payload = notification(alert("fixAlert", "dd"))
    resps = await asyncio.gather(*(post(client, payload) for _ in range(20)))
    outcomes = sorted([(await r.json())["alerts"][0]["outcome"] for r in resps])
    assert outcomes == ["duplicate"] * 19 + ["new"]
    assert count_rows(store_of(client), "incidents") == 1


@pytest.mark.parametrize("body,ctype,status,message", [
    (b"{not json", "application/json", 400, "invalid JSON: line 1 column 2"),
    (json.dumps({"version": "3"}), "application/json", 400, "version: expected \"4\""),
    (json.dumps(notification(alert())), "text/plain", 415, "Content-Type must be application/json"),
    (json.dumps({**notification(alert()), "alerts": [{**alert(), "startsAt": "yesterday"}]}),
     "application/json", 400, "alerts[0].startsAt: invalid RFC 3339 timestamp"),
    (json.dumps({**notification(alert()), "alerts": [{**alert(), "fingerprint": "zz;rm"}]}),
     "application/json", 400, "alerts[0].fingerprint"),
    (json.dumps({**notification(alert()), "alerts": [{**alert(), "labels": {"alertname": 1}}]}),
     "application/json", 400, "alerts[0].labels.alertname: expected a string"),
    (json.dumps(notification(alert(annotations={"x": "y" * 3000}))) + " " * 4096,
     "application/json", 413, "body larger than 4096 bytes"),
    (json.dumps(notification(alert(starts_at="2026-01-01T00:00:00Z\n"))), "application/json", 400,
     "alerts[0].startsAt: invalid RFC 3339 timestamp"),
])
async def test_bad_payloads_get_precise_4xx(make_config: Any, start_remediator: Any, body: Any,
                                            ctype: str, status: int, message: str) -> None:
    client = await start_remediator(make_config(webhook={
        "bearer_token_file": make_config().webhook.bearer_token_file, "max_body_bytes": 4096}))
    resp = await client.post("/api/v1/alerts", data=body,
                             headers={"Content-Type": ctype, "Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    assert resp.status == status
    assert message in (await resp.json())["error"]
    assert count_rows(store_of(client), "notifications") == 0


async def test_auth_failures_change_nothing(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")]))
    payload = notification(alert("fixAlert", "ee"))
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwdw=="},
                    ADMIN_AUTH):
        resp = await post(client, payload, headers)
        assert resp.status == 401
        assert "WWW-Authenticate" in resp.headers
        assert WEBHOOK_TOKEN not in await resp.text()
    for table in ("notifications", "alerts", "incidents", "attempts"):
        assert count_rows(store_of(client), table) == 0
    # the admin API refuses the webhook token and no token
    assert (await client.get("/api/v1/incidents")).status == 401
    assert (await client.post("/api/v1/control/pause",
                              headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"})).status == 401
    assert count_rows(store_of(client), "control_flags") == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_webhook_notifications_total{result="unauthorized"} 4.0' in metrics


async def test_basic_auth_option(make_config: Any, start_remediator: Any, secrets_dir: Any) -> None:
    (secrets_dir / "pw").write_text("s3cret")
    client = await start_remediator(make_config(webhook={
        "basic_auth": {"username": "am", "password_file": str(secrets_dir / "pw")}}))
    import base64

    good = {"Authorization": "Basic " + base64.b64encode(b"am:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"am:nope").decode()}
    assert (await post(client, notification(alert()), bad)).status == 401
    assert (await post(client, notification(alert()), good)).status == 200


async def test_store_outage_answers_5xx_then_recovers(pg_url: str, make_config: Any,
                                                      start_remediator: Any) -> None:
    # pg_url first: fixtures tear down in reverse, so the app stops before its schema is dropped
    client = await start_remediator(make_config([procedure("fix")], paused=True), pg_url)
    store = store_of(client)
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE notifications RENAME TO notifications_away"))
    payload = notification(alert("fixAlert", "ff"))
    resp = await post(client, payload)
    assert resp.status == 503
    assert "retry" in (await resp.json())["error"]
    assert (await client.get("/metrics")).status == 200
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE notifications_away RENAME TO notifications"))
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 0
    # Alertmanager retries: now it is stored, once
    resp = await post(client, payload)
    assert resp.status == 200
    assert (await resp.json())["alerts"][0]["outcome"] == "new"
    metrics = await (await client.get("/metrics")).text()
    assert 'vigil_webhook_notifications_total{result="store_error"} 1.0' in metrics


async def test_two_replicas_on_one_postgresql_run_a_procedure_once(
        pg_url: str, make_config: Any, start_remediator: Any, tmp_path: Any) -> None:
    # pg_url first: fixtures tear down in reverse, so the app stops before its schema is dropped
    import sys

    runs = tmp_path / "runs"
    proc = procedure("fix", steps=[{"action": "command", "argv": [
        sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')"]}])
    a = await start_remediator(make_config([proc], replica_id="a"), pg_url)
    b = await start_remediator(make_config([proc], replica_id="b"), pg_url)
    payload = notification(alert("fixAlert", "ab12"))
    # Alertmanager HA: both peers notify both replicas, at once
    resps = await asyncio.gather(post(a, payload), post(b, payload), post(a, payload), post(b, payload))
    outcomes = sorted([(await r.json())["alerts"][0]["outcome"] for r in resps])
    assert outcomes == ["duplicate", "duplicate", "duplicate", "new"]

    async def resolved() -> bool:
        rows = await incidents(a)
        return bool(rows) and rows[0]["state"] == "resolved"

    await wait_until(resolved, what="the incident to be remediated")
    await asyncio.sleep(1.0)  # both sweepers have run meanwhile
    assert runs.read_text() == "x"
    assert count_rows(store_of(a), "attempts") == 1


def test_one_batch_mixes_open_and_escalated_incidents(database_url: str, make_config: Any) -> None:
    # one executemany for the batch's incidents: it used to fail (and fall back to one
    # transaction per notification) when matched and unmatched alerts shared a batch
    from vigil.remediator.matching import match_alert
    from vigil.remediator.payload import parse_payload
    from vigil.remediator.store import Store

    config = make_config([procedure("fix")])
    store = Store(database_url)
    try:
        store.migrate()
        batch = []
        for i in range(4):
            name = "fixAlert" if i % 2 else "OtherAlert"
            parsed = parse_payload(notification(alert(name, f"c{i}")))
            batch.append((parsed, [match_alert(config, a.as_dict()) for a in parsed.alerts], False))
        results = store.ingest(batch)
        assert [r.outcomes for r in results] == [["unmatched"], ["new"], ["unmatched"], ["new"]]
        assert [len(r.new_incidents) for r in results] == [0, 1, 0, 1]
        assert [len(r.escalate) for r in results] == [1, 0, 1, 0]
    finally:
        store.dispose()


async def test_a_burst_admits_every_incident(database_url: str, make_config: Any,
                                             start_remediator: Any) -> None:
    # commits that land while an admission runs are admitted together by the next one:
    # every incident of a burst is still correlated, and the open ones are acted on
    client = await start_remediator(make_config([procedure("fix", cooldown=0, max_attempts=100)]),
                                    database_url)
    payloads = [notification(alert("fixAlert" if i % 2 else "OtherAlert", f"b{i:x}",
                                   labels={"instance": f"h{i}:80"}))
                for i in range(60)]
    resps = await asyncio.gather(*(post(client, p) for p in payloads))
    assert [r.status for r in resps] == [200] * 60

    async def all_admitted() -> bool:
        rows = await incidents(client, limit=100)
        fixed = [r for r in rows if r["procedure"] == "fix"]
        return (count_rows(store_of(client), "incident_intel") == 60 and len(fixed) == 30
                and all(r["state"] == "resolved" for r in fixed))

    await wait_until(all_admitted, what="every incident correlated and the open ones fixed")
    assert {r["state"] for r in await incidents(client, procedure=None, limit=100)
            if r["procedure"] is None} == {"escalated"}



def test_overlapping_batches_on_two_replicas_store_each_alert_once(pg_url: str,
                                                                   make_config: Any) -> None:
    # two stores (two replicas' connection pools) write batches that share most alerts, in
    # threads at once: the unique constraint makes exactly one of them "new" per alert,
    # whether the duplicate is in the same batch, a concurrent one or an earlier one
    import random
    from concurrent.futures import ThreadPoolExecutor

    from vigil.remediator.matching import match_alert
    from vigil.remediator.payload import parse_payload
    from vigil.remediator.store import Store

    config = make_config([procedure("fix")])
    stores = [Store(pg_url), Store(pg_url)]
    stores[0].migrate()

    def batch(seed: int) -> list[Any]:
        r = random.Random(seed)
        items = []
        for _ in range(8):
            alerts = [alert("fixAlert" if k % 2 else "OtherAlert", f"{r.randrange(40):x}")
                      for k in range(r.randint(1, 4))]
            parsed = parse_payload(notification(*alerts))
            items.append((parsed, [match_alert(config, a.as_dict()) for a in parsed.alerts], False))
        return items

    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda k: stores[k % 2].ingest(batch(k)), range(24)))
        outcomes = [o for rs in results for r in rs for o in r.outcomes]
        firsts = outcomes.count("new") + outcomes.count("unmatched")
        with stores[0].engine.connect() as conn:
            alerts_ = conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one()
            incidents_ = conn.execute(sa.text("SELECT count(*) FROM incidents")).scalar_one()
            notes = conn.execute(sa.text("SELECT count(*) FROM notifications")).scalar_one()
            orphans = conn.execute(sa.text(
                "SELECT count(*) FROM alerts a LEFT JOIN incidents i ON i.alert_id = a.id "
                "WHERE i.id IS NULL")).scalar_one()
        assert firsts == alerts_ == incidents_ and orphans == 0
        assert notes == 24 * 8
        assert outcomes.count("duplicate") == len(outcomes) - firsts > 0
    finally:
        for s in stores:
            s.dispose()


@pytest.mark.parametrize("encoding,body,status,message", [
    ("gzip", gzip.compress(json.dumps(notification(alert())).encode()), 200, ""),
    ("deflate", zlib.compress(json.dumps(notification(alert())).encode()), 200, ""),
    ("gzip", b"this is not gzip", 400, "not valid gzip data"),
    ("deflate", b"\xff" * 64, 400, "not valid deflate data"),
    ("gzip", gzip.compress(json.dumps(notification(alert())).encode())[:-12], 400, "truncated"),
    ("gzip", gzip.compress(b" " * 100_000), 413, "decompressed body larger than 4096 bytes"),
    ("br", b"\x0b\x02\x80{}\x03", 415, "Content-Encoding 'br' is not supported"),
    ("gzip, br", b"x", 415, "is not supported"),
])
async def test_content_encodings_are_decoded_or_refused_with_4xx(
        make_config: Any, start_remediator: Any, encoding: str, body: bytes, status: int,
        message: str) -> None:
    client = await start_remediator(make_config(paused=True, webhook={
        "bearer_token_file": make_config().webhook.bearer_token_file, "max_body_bytes": 4096}))
    resp = await client.post("/api/v1/alerts", data=body, headers={
        "Content-Type": "application/json", "Content-Encoding": encoding,
        "Authorization": f"Bearer {WEBHOOK_TOKEN}"})
    assert resp.status == status, await resp.text()
    if status != 200:
        assert message in (await resp.json())["error"]
    assert count_rows(store_of(client), "notifications") == (1 if status == 200 else 0)


async def test_a_short_storm_drains_each_incident_once_with_one_heartbeat(
        pg_url: str, make_config: Any, start_remediator: Any) -> None:
    """300 matched alerts at once: every incident runs exactly once and resolves, and the
    replica beats for all its queued attempts with one task (not one per attempt)."""
    from tests.remediator.conftest import engine_of

    proc = procedure("storm", params={"svc": {"label": "service", "pattern": "s[0-9]+"}},
                     target="${svc}", max_concurrent=4, steps=[{"action": "wait", "seconds": 0.02}])
    client = await start_remediator(make_config([proc], max_concurrent=4), pg_url)
    engine = engine_of(client)
    bodies = [notification(*(alert("stormAlert", f"{n:02x}{i:02x}", labels={"service": f"s{n}{i}"})
                             for i in range(50)), group_key=f"g{n}") for n in range(6)]
    for resp in await asyncio.gather(*(post(client, b) for b in bodies)):
        assert resp.status == 200
    peak = 0
    heartbeats = 0

    async def drained() -> bool:
        nonlocal peak, heartbeats
        peak = max(peak, len(engine.beating))
        heartbeats = max(heartbeats, sum(
            1 for t in asyncio.all_tasks() if "_heartbeat_forever" in repr(t.get_coro())))
        rows = await incidents(client, limit=1000)
        return len(rows) == 300 and all(r["state"] == "resolved" for r in rows)

    await wait_until(drained, timeout=120, what="the storm to drain")
    assert peak > 50 and heartbeats == 1, (peak, heartbeats)
    with store_of(client).engine.connect() as conn:
        per = conn.execute(sa.text("SELECT incident_id, count(*), min(state) FROM attempts "
                                   "GROUP BY incident_id")).all()
    assert len(per) == 300 and {(n, s) for _, n, s in per} == {(1, "succeeded")}
