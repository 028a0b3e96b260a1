"""Store outage: PostgreSQL refuses the remediator's connections while Alertmanager delivers.

The remediator reaches the shared PostgreSQL through a TCP proxy owned by the test, so the
outage hits this remediator only (the server stays up for everyone else). During the outage
the webhook must answer 5xx, Alertmanager must retry, and readiness must say why it is not
ready; afterwards every alert is recorded and every due procedure runs exactly once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.harness import wait_for
from tests.reliability.helpers import (
    WEBHOOK_AUTH,
    Recorder,
    TcpProxy,
    alert,
    metric_value,
    notification,
    post_to_alertmanager,
    remediator_config,
    remediator_process,
    store_rows,
    upstream_of,
    via_proxy,
)


def am_config(token_file: Path, url: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "vigil-remediator", "group_by": ["..."], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "vigil-remediator", "webhook_configs": [{
            "url": url, "send_resolved": False,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}]}],
    }


def probe_alerts(ids: range) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    return [{"labels": {"alertname": "OutageProbe", "id": str(i), "remediation": "auto"},
             "annotations": {}, "startsAt": now} for i in ids]


def test_store_outage_answers_5xx_alertmanager_retries_nothing_lost_nothing_twice(
        tmp_path: Path, pg_url: str, start_process: Any, alertmanager_factory: Any) -> None:
    recorder = Recorder().start()
    proxy = TcpProxy(upstream_of(pg_url)).start()
    try:
        spec = remediator_config(tmp_path, via_proxy(pg_url, proxy), "outage", [{
            "name": "append-log", "match": ['alertname="OutageProbe"'], "cooldown": 0,
            "max_concurrent": 4, "params": {"id": {"label": "id", "pattern": "[0-9]{1,4}"}},
            "target": "probe-${id}",
            "steps": [{"action": "http", "url": f"{recorder.url}/log/${{id}}", "retries": 0}]}])
        start_process(remediator_process(spec, tmp_path))
        _, am_url = alertmanager_factory(am_config(tmp_path / "secrets" / "webhook-token",
                                                   f"{spec.url}/api/v1/alerts"))

        post_to_alertmanager(am_url, probe_alerts(range(5)))
        wait_for(lambda: len(recorder.counts()) == 5, timeout=60, what="5 procedures before the outage")

        proxy.stop()  # PostgreSQL now refuses this remediator (and only it)
        def not_ready() -> str:
            resp = requests.get(f"{spec.url}/-/ready", timeout=10)
            return resp.text if resp.status_code == 503 else ""

        ready = wait_for(not_ready, timeout=30, what="readiness to report the outage")
        assert "incident store unavailable" in ready
        post_to_alertmanager(am_url, probe_alerts(range(5, 15)))

        def remediator_metric(result: str) -> float:
            text = requests.get(f"{spec.url}/metrics", timeout=10).text
            return metric_value(text, "vigil_webhook_notifications_total", {"result": result})

        # every new alert bounced at least twice: Alertmanager saw the 5xx and retried
        wait_for(lambda: remediator_metric("store_error") >= 20, timeout=90,
                 what="Alertmanager to retry against the 5xx answers")
        am_metrics = requests.get(f"{am_url}/metrics", timeout=10).text
        assert metric_value(am_metrics, "alertmanager_notification_requests_failed_total",
                            {"integration": "webhook"}) >= 1
        assert set(recorder.counts()) == {str(i) for i in range(5)}, "a procedure ran without its record"
        assert requests.get(f"{spec.url}/-/healthy", timeout=10).status_code == 200

        proxy.start()  # PostgreSQL is back
        wait_for(lambda: requests.get(f"{spec.url}/-/ready", timeout=10).status_code == 200,
                 timeout=30, what="readiness after recovery")

        def all_done() -> bool:
            rows = store_rows(pg_url, "SELECT count(*) AS n FROM incidents WHERE state = 'resolved'")
            return len(recorder.counts()) == 15 and rows[0]["n"] == 15

        wait_for(all_done, timeout=120, interval=0.5, what="all 15 procedures after recovery")
        time.sleep(3)  # a quiet period in which a duplicate would still land (not a timing assertion)
        counts = recorder.counts()
        assert counts == {str(i): 1 for i in range(15)}, counts
        alerts = store_rows(pg_url, "SELECT labels FROM alerts")
        assert sorted(int(a["labels"]["id"]) for a in alerts) == list(range(15))
        attempts = store_rows(pg_url, "SELECT incident_id, state FROM attempts")
        assert sorted(a["state"] for a in attempts) == ["succeeded"] * 15
        assert len({a["incident_id"] for a in attempts}) == 15
        assert remediator_metric("accepted") >= 15
    finally:
        proxy.stop()
        recorder.stop()


STORE_BOUND = 15.0  # seconds a webhook call or a readiness probe may take while the store hangs


def test_store_partition_answers_within_a_bound(tmp_path: Path, pg_url: str, start_process: Any) -> None:
    """PostgreSQL unreachable without a refusal (a partition: packets vanish). The webhook must
    still answer 503 and readiness 503, within a bound, rather than hang until TCP gives up."""
    proxy = TcpProxy(upstream_of(pg_url)).start()
    try:
        spec = remediator_config(tmp_path, via_proxy(pg_url, proxy), "partition", [])
        start_process(remediator_process(spec, tmp_path))
        proxy.blackhole.set()
        proxy.stop()
        proxy.start()  # listening again, but nothing gets through
        body = notification(alert("PartitionProbe", "ab"))
        try:
            resp = requests.post(f"{spec.url}/api/v1/alerts", json=body, headers=WEBHOOK_AUTH,
                                 timeout=STORE_BOUND)
            ready = requests.get(f"{spec.url}/-/ready", timeout=STORE_BOUND)
        except requests.Timeout:
            pytest.fail(f"no answer within {STORE_BOUND:g}s while the store hangs")
        assert resp.status_code == 503
        assert ready.status_code == 503 and "incident store unavailable" in ready.text
        proxy.blackhole.clear()
        proxy.stop()
        proxy.start()
        wait_for(lambda: requests.get(f"{spec.url}/-/ready", timeout=STORE_BOUND).status_code == 200,
                 timeout=60, what="readiness after the partition heals")
    finally:
        proxy.stop()
