"""Fixtures for the remediator: a config builder, the real app via aiohttp_client, payloads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from vigil.remediator.app import RUNTIME, create_app
from vigil.remediator.config import RemediatorConfig, parse_config
from vigil.remediator.engine import Engine
from vigil.remediator.keys import STORE
from vigil.remediator.store import Store

WEBHOOK_TOKEN = "webhook-secret-token"
ADMIN_TOKEN = "admin-secret-token"
WEBHOOK_AUTH = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def alert(name: str = "TestAlert", fingerprint: str = "a1", *, status: str = "firing",
          starts_at: str = "2026-11-26T10:00:00.123456789Z", labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, **(labels or {})},
            "annotations": annotations or {}, "startsAt": starts_at,
            "endsAt": "2026-11-26T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint}


def notification(*alerts: dict[str, Any], group_key: str = "{}:{alertname=\"x\"}") -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": "4", "groupKey": group_key, "truncatedAlerts": 0, "status": status,
            "receiver": "vigil-remediator", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager", "alerts": list(alerts)}


def procedure(name: str = "fix", *, match: list[str] | None = None, steps: list[dict[str, Any]] | None = None,
              **kw: Any) -> dict[str, Any]:
    return {"name": name, "match": match or [f'alertname="{name}Alert"'],
            "steps": steps or [{"action": "wait", "seconds": 0}], "cooldown": 0, **kw}


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    d = tmp_path / "secrets"
    d.mkdir()
    (d / "webhook-token").write_text(WEBHOOK_TOKEN + "\n")
    (d / "admin-token").write_text(ADMIN_TOKEN)
    return d


@pytest.fixture
def make_config(tmp_path: Path, secrets_dir: Path) -> Callable[..., RemediatorConfig]:
    def make(procedures: list[dict[str, Any]] | None = None, **settings: Any) -> RemediatorConfig:
        data: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'remediator.db'}",
            "replica_id": "test-replica",
            "webhook": {"bearer_token_file": str(secrets_dir / "webhook-token")},
            "admin": {"bearer_token_file": str(secrets_dir / "admin-token")},
            "procedures": procedures or [],
        }
        data.update(settings)
        return parse_config(data, tmp_path / "remediator.yml")

    return make


Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
def start_remediator(aiohttp_client: Any) -> Callable[..., Awaitable[Any]]:
    """Start the real app: start(config, database_url=None) -> aiohttp test client."""

    async def start(config: RemediatorConfig, database_url: str | None = None, **kw: Any) -> Any:
        store = Store(database_url or config.resolved_database_url())
        kw.setdefault("heartbeat_interval", 0.1)
        kw.setdefault("sweep_interval", 0.5)
        app = create_app(config, store=store, **kw)
        return await aiohttp_client(app)

    return start


def engine_of(client: Any) -> Engine:
    engine = client.server.app[RUNTIME].engine
    assert engine is not None
    return engine


def store_of(client: Any) -> Store:
    return client.server.app[STORE]


async def post(client: Any, payload: Any, headers: dict[str, str] | None = None) -> Any:
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return await client.post("/api/v1/alerts", data=body,
                             headers={"Content-Type": "application/json",
                                      **(WEBHOOK_AUTH if headers is None else headers)})


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll a sync or async predicate until truthy (runs sync ones in a thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while loop.time() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        last = value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def incident_state(client: Any, incident_id: int) -> str:
    inc = await asyncio.to_thread(store_of(client).incident, incident_id)
    return str(inc["state"]) if inc else ""


async def incidents(client: Any, **filters: Any) -> list[dict[str, Any]]:
    return await asyncio.to_thread(store_of(client).list_incidents, **filters)


async def timeline(client: Any, incident_id: int) -> dict[str, Any]:
    data = await asyncio.to_thread(store_of(client).timeline, incident_id)
    assert data is not None
    return data


def count_rows(store: Store, table: str) -> int:
    import sqlalchemy as sa

    with store.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
