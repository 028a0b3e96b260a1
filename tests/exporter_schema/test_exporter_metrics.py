"""The schema checks behind the real exporter app: /metrics stays whole when a database is down."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from vigil.exporter.config import parse_config
from vigil.exporter.service import ExporterSettings, create_app

from tests.exporter_schema.conftest import run_sql
from tests.exporter_schema.schemas import SHOP
from vigil.procs import free_port

SECRET = "Exp0rter-Secret"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_with_a_healthy_and_a_dead_database(
        aiohttp_client: Any, pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    run_sql(pg_url, SHOP + "CREATE TABLE loose (a int);")
    monkeypatch.setenv("DEAD_DB_URL",
                       f"postgresql://vigil:{SECRET}@127.0.0.1:{free_port()}/shop")
    config = parse_config({"targets": [
        {"name": "shop", "base_url": "http://127.0.0.1:1",
         "schema": {"url": pg_url, "expected": {"sqlalchemy_metadata": "vigil.demo.db:metadata"}}},
        {"name": "dead", "base_url": "http://127.0.0.1:1",
         "schema": {"url_env": "DEAD_DB_URL", "connect_timeout_seconds": 2}},
    ]}, tmp_path / "exporter.yml")
    client = await aiohttp_client(create_app(ExporterSettings(config)))
    resp = await client.get("/metrics", headers={"X-Prometheus-Scrape-Timeout-Seconds": "20"})
    assert resp.status == 200
    text = await resp.text()
    got = samples(text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("vigil_check_success", target="shop", check="schema") == 1
    assert value("vigil_check_success", target="shop", check="schema_lint") == 1
    # the shop schema is not the demo's: inconsistent
    assert value("vigil_schema_consistent", target="shop") == 0
    assert value("vigil_schema_tables", target="shop") == 4
    assert value("vigil_check_success", target="dead", check="schema_lint") == 0
    assert SECRET not in text and SECRET not in caplog.text
