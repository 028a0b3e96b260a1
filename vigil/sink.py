"""A webhook sink: a real HTTP server on loopback that records what Alertmanager sends.

Used by the tests and by the scenario runner (to see what reaches a human receiver).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from aiohttp import web

__all__ = ["WebhookReceiver"]


class WebhookReceiver:
    """A real HTTP server on loopback, in its own thread, that records every POST body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.received_at: list[float] = []
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
            self.received_at.append(time.time())
        return web.Response(status=self.status)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server) and server.sockets
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
