"""A fake service ("shop") whose /metrics Prometheus scrapes: an exporter finding it can switch
on and off, and request counters that grow on every scrape (for the impact queries)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from tests.remediator.conftest import make_config, secrets_dir, start_remediator  # noqa: F401 - fixtures
from vigil.procs import free_port


@dataclass
class Shop:
    host_port: str
    registry: CollectorRegistry
    finding: Gauge
    requests: Counter
    fixes: list[str] = field(default_factory=list)
    cors_broken: bool = False

    def break_cors(self) -> None:
        self.cors_broken = True
        self.finding.labels("shop", "cors", "method-allowed", "critical", "PATCH").set(1)

    def fix_cors(self) -> None:
        self.cors_broken = False
        self.finding.remove("shop", "cors", "method-allowed", "critical", "PATCH")


@pytest.fixture
async def shop() -> AsyncIterator[Shop]:
    registry = CollectorRegistry()
    finding = Gauge("vigil_finding_info", "Active findings.",
                    ["target", "check", "rule", "severity", "subject"], registry=registry)
    requests = Counter("http_requests_total", "Requests served.", ["status"], registry=registry)
    port = free_port()
    state = Shop(f"127.0.0.1:{port}", registry, finding, requests)

    async def metrics(_: web.Request) -> web.Response:
        # 10 requests per scrape; while CORS is broken, 4 of them (the PATCHes) fail
        state.requests.labels("200").inc(6 if state.cors_broken else 10)
        if state.cors_broken:
            state.requests.labels("500").inc(4)
        return web.Response(body=generate_latest(registry), content_type="text/plain")

    async def fix(_: web.Request) -> web.Response:
        state.fixes.append("cors")
        state.fix_cors()
        return web.json_response({"fixed": True})

    async def restart(_: web.Request) -> web.Response:
        state.fixes.append("restart")
        return web.json_response({"restarted": True})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/fix-cors", fix)
    app.router.add_post("/restart", restart)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield state
    finally:
        await runner.cleanup()
