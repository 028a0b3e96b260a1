"""Helpers for tests that drive real components: polling, Prometheus queries, a webhook sink."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import requests
from aiohttp import web

from vigil.procs import BinaryNotFound, find_binary

T = TypeVar("T")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    """Path of a binary; in CI a missing one fails the test, elsewhere it skips."""
    try:
        return find_binary(name)
    except BinaryNotFound as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.25,
             what: str = "condition") -> T:
    """Poll until predicate returns a truthy value; return it, or fail naming what we waited for."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}"
                         + (f" (last error: {last_exc!r})" if last_exc else ""))


def prom_query(base_url: str, expr: str) -> list[dict[str, Any]]:
    """Instant query against a real Prometheus; returns the result vector."""
    resp = requests.get(f"{base_url}/api/v1/query", params={"query": expr}, timeout=5)
    resp.raise_for_status()
    body = resp.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def prom_value(base_url: str, expr: str) -> float | None:
    """The single value of an instant query, or None when it returns nothing."""
    result = prom_query(base_url, expr)
    if not result:
        return None
    return float(result[0]["value"][1])


def prom_alerts(base_url: str) -> list[dict[str, Any]]:
    resp = requests.get(f"{base_url}/api/v1/alerts", timeout=5)
    resp.raise_for_status()
    return list(resp.json()["data"]["alerts"])


class WebhookReceiver:
    """A real HTTP server on loopback, in its own thread, that records every POST body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            try:
                self.received.append(json.loads(body))
            except ValueError:
                self.received.append({"_raw": body.decode(errors="replace")})
            self.headers.append(dict(request.headers))
        return web.Response(status=self.status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    def start(self) -> WebhookReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert of every notification received so far."""
        with self._lock:
            return [a for n in self.received for a in n.get("alerts", [])]
