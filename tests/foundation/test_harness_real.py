"""Proof that the harness drives real components: Prometheus scrapes, rules fire, Alertmanager delivers."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import yaml
from vigil.demo.client import DemoTarget, start_demo_target

from tests.harness import WebhookReceiver, prom_query, prom_value, wait_for
from vigil.procs import alertmanager_config, prometheus_config


def test_prometheus_scrapes_demo_target(prometheus_factory, demo_target: DemoTarget) -> None:
    assert demo_target.api("GET", "/api/v1/items").status_code == 200
    _, prom = prometheus_factory(prometheus_config({"demo": [demo_target.host_port]}))
    series = wait_for(lambda: prom_query(prom, 'http_requests_total{job="demo",route="/api/v1/items"}'),
                      what="http_requests_total in Prometheus")
    assert series[0]["metric"]["method"] == "GET"
    assert series[0]["metric"]["status"] == "200"
    assert float(series[0]["value"][1]) >= 1


def test_rule_fires_and_alertmanager_delivers(tmp_path: Path, prometheus_factory, alertmanager_factory,
                                              webhook_receiver: WebhookReceiver,
                                              demo_target: DemoTarget) -> None:
    _, am = alertmanager_factory(alertmanager_config(webhook_receiver.url))
    rules = tmp_path / "test.rules.yml"
    rules.write_text(yaml.safe_dump({"groups": [{"name": "harness", "rules": [{
        "alert": "DemoConfigDrifted", "expr": "demo_config_drift == 1", "for": "2s",
        "labels": {"severity": "warning"},
        "annotations": {"summary": "The demo target's config drifted."}}]}]}))
    _, prom = prometheus_factory(prometheus_config(
        {"demo": [demo_target.host_port]}, rule_files=[rules], alertmanagers=[am.removeprefix("http://")]))
    wait_for(lambda: prom_value(prom, 'up{job="demo"}') == 1, what="demo target up")
    assert webhook_receiver.alerts() == []
    demo_target.inject(cors_drift=True)
    alerts = wait_for(lambda: [a for a in webhook_receiver.alerts() if a["status"] == "firing"],
                      timeout=45, what="firing alert delivered by Alertmanager")
    assert alerts[0]["labels"]["alertname"] == "DemoConfigDrifted"
    assert alerts[0]["labels"]["job"] == "demo"
    assert webhook_receiver.received[0]["version"] == "4"
    demo_target.admin("POST", "/admin/config/restore")
    wait_for(lambda: [a for a in webhook_receiver.alerts() if a["status"] == "resolved"],
             timeout=45, what="resolved notification")


def test_demo_target_on_postgresql(tmp_path: Path, pg_url: str, start_process) -> None:
    target = start_demo_target(tmp_path / "t", database_url=pg_url)
    start_process(target.process)
    assert [i["name"] for i in target.api("GET", "/api/v1/items").json()] == ["widget", "gadget"]
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            tables = {r[0] for r in conn.execute(sa.text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema})}
    finally:
        engine.dispose()
    assert schema.startswith("t_")
    assert {"items", "users", "orders"} <= tables
