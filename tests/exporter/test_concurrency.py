"""Probes run concurrently, never beyond the configured bound, and reuse connections across
scrapes. Measured on the server side, without timing assertions."""

from __future__ import annotations

import asyncio

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.exporter.checks import build_checks
from vigil.exporter.config import parse_config
from vigil.exporter.runner import CheckRunner


class Recorder:
    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.peers: list[set[int]] = [set()]

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers[-1].add(peer[1])
        try:
            await asyncio.sleep(0.05)  # long enough for concurrent probes to overlap
        finally:
            self.in_flight -= 1
        origin = request.headers.get("Origin", "")
        return web.Response(
            status=204 if request.method == "OPTIONS" else 200,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                "Vary": "Origin",
            }
            if origin == "https://a.example.com"
            else {},
        )


async def test_probes_are_concurrent_bounded_and_reuse_connections(
    aiohttp_server: AiohttpServer,
) -> None:
    rec = Recorder()
    app = web.Application()
    app.router.add_route("*", "/", rec.handle)
    server = await aiohttp_server(app)
    config = parse_config(
        {
            "targets": [
                {
                    "name": "t",
                    "base_url": str(server.make_url("")).rstrip("/"),
                    "cors": {"origins": ["https://a.example.com"], "concurrency": 5},
                }
            ]
        }
    )
    runner = CheckRunner(build_checks(config))
    try:
        [first] = await runner.refresh(10)
        assert first.success and first.findings == [], first.findings
        assert 2 <= rec.peak <= 5  # concurrent, and never more than cors.concurrency
        rec.peers.append(set())
        await runner.refresh(10)
        assert rec.peers[1] <= rec.peers[0]  # the second scrape reused the same connections
    finally:
        await runner.close()
