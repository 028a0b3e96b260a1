"""The demo target: a small JSON API with injectable faults, standing in for the watched service.

See docs/demo-target.md for its API, faults, recovery controls and metrics.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from vigil.demo import db
from vigil.demo.faults import DiskSpool, FaultError, Faults, MemoryLeak, PoolHog, tick
from vigil.demo.repository import ItemRepository
from vigil.demo.settings import DemoConfig, deep_merge, load_config

from vigil.config import ConfigError
from vigil.service import (
    ArgumentParser,
    add_service_flags,
    add_standard_routes,
    run_app,
    setup_logging,
)

__all__ = ["STATE", "DemoState", "TargetSettings", "create_app", "main"]

log = logging.getLogger("vigil.demo.target")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class TargetSettings:
    """How to run one demo target."""

    state_dir: Path
    config: DemoConfig
    database_url: str | None = None
    api_key: str | None = None
    admin_token: str | None = None
    tick_interval: float = 0.5


class DemoState:
    """Everything the running target holds: config, database, faults and metrics."""

    def __init__(self, settings: TargetSettings) -> None:
        self.settings = settings
        self.state_dir = settings.state_dir
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.live_path = self.state_dir / "config.yaml"
        self.baseline_path = self.state_dir / "config.baseline.yaml"
        self.config = settings.config
        self.baseline = settings.config
        self._write_config(self.baseline_path, self.baseline)
        self._write_config(self.live_path, self.config)
        self.database_url = settings.database_url or f"sqlite:///{self.state_dir / 'demo.db'}"
        self.engine = db.make_engine(self.database_url, self.config.db_pool_size)
        db.create_and_seed(self.engine)
        self.repo = ItemRepository(self.engine)
        self.faults = Faults()
        self.leak = MemoryLeak()
        self.spool = DiskSpool(self.state_dir / "spool")
        self.hog = PoolHog()
        self.breaker_open = False
        # With retry_after set, an open breaker lets one trial call through once that many
        # seconds have passed (half-open): success closes it, failure opens it again.
        self.breaker_retry_after: float | None = None
        self.breaker_opened_at = 0.0
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter("http_requests_total", "HTTP requests served.",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("http_request_duration_seconds", "HTTP request latency.",
                                 ["method", "route"], registry=self.registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.downstream = Counter("demo_downstream_requests_total",
                                  "Calls to the downstream pricing dependency by result.",
                                  ["result"], registry=self.registry)
        self.reloads = Counter("demo_config_reloads_total", "Config reloads applied.",
                               registry=self.registry)
        self.restarts = Counter("demo_restarts_total", "In-process restarts.",
                                registry=self.registry)
        for result in ("success", "error", "short_circuited"):
            self.downstream.labels(result)
        self.registry.register(_StateCollector(self))

    # --- config ---------------------------------------------------------------------------
    @staticmethod
    def _write_config(path: Path, config: DemoConfig) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        tmp.replace(path)

    def drifted(self) -> bool:
        return self.config.model_dump() != self.baseline.model_dump()

    def apply_patch(self, patch: dict[str, Any]) -> None:
        """Deep-merge a patch into the live config, write it, apply it."""
        merged = deep_merge(self.config.model_dump(mode="json"), patch)
        from vigil.config import parse_model

        new = parse_model(DemoConfig, merged, "config_patch")
        self._write_config(self.live_path, new)
        self.config = new

    def drop_patch(self) -> None:
        methods = [m for m in self.config.cors.allow_methods if m.upper() != "PATCH"]
        self.apply_patch({"cors": {"allow_methods": methods}})

    def reload(self) -> None:
        """Re-read the live config file; raise ConfigError and keep the old config if invalid."""
        self.config = load_config(self.live_path)
        self.reloads.inc()

    def restore(self) -> None:
        self.live_path.write_bytes(self.baseline_path.read_bytes())
        self.reload()

    # --- faults ---------------------------------------------------------------------------
    def advance(self, dt: float) -> None:
        f = self.faults
        if f.memory_growth_bytes_per_second:
            self.leak.grow(f.memory_growth_bytes_per_second * dt, self.config.limits.memory_limit_bytes)
        if f.disk_growth_bytes_per_second:
            self.spool.grow(f.disk_growth_bytes_per_second * dt, self.config.limits.disk_capacity_bytes)
        if f.latency_growth_seconds_per_second:
            high = Faults.NUMERIC_LIMITS["latency_seconds"][1]
            f.latency_seconds = min(high, f.latency_seconds + f.latency_growth_seconds_per_second * dt)
        if f.pool_leak_connections_per_second:
            self.hog.leak(self.engine, f.pool_leak_connections_per_second * dt, self.config.db_pool_size)

    def restart(self) -> None:
        """What a process restart would clear: leaked memory and held connections."""
        self.faults.memory_growth_bytes_per_second = 0
        self.faults.pool_exhaustion = False
        self.faults.pool_leak_connections_per_second = 0.0
        self.leak.free()
        self.hog.release()
        self.engine.dispose()
        self.restarts.inc()

    def pool_in_use(self) -> int:
        pool = self.engine.pool
        return int(pool.checkedout()) if isinstance(pool, sa.pool.QueuePool) else 0


class _StateCollector(Collector):
    """Gauges read from the target's state at scrape time."""

    def __init__(self, state: DemoState) -> None:
        self.state = state

    def collect(self) -> Any:
        s = self.state

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("demo_memory_leak_bytes", "Bytes held by the memory-growth fault.", s.leak.size)
        yield gauge("demo_memory_limit_bytes", "Memory limit of the target (as a container limit).",
                    s.config.limits.memory_limit_bytes)
        yield gauge("demo_disk_usage_bytes", "Bytes used on the target's data volume.", s.spool.usage())
        yield gauge("demo_disk_capacity_bytes", "Capacity of the target's data volume.",
                    s.config.limits.disk_capacity_bytes)
        yield gauge("demo_db_pool_connections_in_use", "Database pool connections checked out.",
                    s.pool_in_use())
        yield gauge("demo_db_pool_size", "Database pool size.", s.config.db_pool_size)
        yield gauge("demo_circuit_breaker_open", "1 when the downstream circuit breaker is open.",
                    1 if s.breaker_open else 0)
        yield gauge("demo_config_drift", "1 when the live config differs from the baseline.",
                    1 if s.drifted() else 0)
        active = GaugeMetricFamily("demo_fault_active", "1 for each injected fault that is active.",
                                   labels=["fault"])
        for name, on in {**s.faults.active(), "config_drift": s.drifted()}.items():
            active.add_metric([name], 1 if on else 0)
        yield active


STATE = web.AppKey("state", DemoState)


# --- middlewares ----------------------------------------------------------------------------

def _route(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource if route is not None else None
    return resource.canonical if resource is not None else "other"


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    route = _route(request)
    start = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if route != "/metrics":
            state.requests.labels(request.method, route, str(status)).inc()
            state.latency.labels(request.method, route).observe(time.perf_counter() - start)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[STATE].config
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for name, value in config.security_headers.items():
        response.headers[name] = value
    response.headers["Server"] = config.server_header or "demo-target"
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _allowed_origin(origin: str, cors: Any) -> str | None:
    if cors.reflect_any_origin:
        return origin
    if origin == "null":
        return "null" if cors.allow_null_origin else None
    if "*" in cors.allow_origins:
        return "*"
    return origin if origin in cors.allow_origins else None


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    cors = request.app[STATE].config.cors
    origin = request.headers.get("Origin")
    if origin is None or not request.path.startswith("/api/"):
        return await handler(request)
    allowed = _allowed_origin(origin, cors)
    headers: dict[str, str] = {}
    if allowed is not None:
        headers["Access-Control-Allow-Origin"] = allowed
        if cors.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if cors.vary_origin and allowed != "*":
            headers["Vary"] = "Origin"
    is_preflight = request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers
    if is_preflight:
        if allowed is None:
            return web.Response(status=403, text="CORS origin not allowed\n")
        methods = [m.lower() if cors.methods_case == "lower" else m.upper() for m in cors.allow_methods]
        headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        headers["Access-Control-Allow-Headers"] = ", ".join(cors.allow_headers)
        headers["Access-Control-Max-Age"] = str(cors.max_age)
        return web.Response(status=cors.preflight_status, headers=headers)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """API key, then the error-rate and latency faults, for /api/ routes only."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    state = request.app[STATE]
    key = state.settings.api_key
    if key and not hmac.compare_digest(request.headers.get("X-API-Key", ""), key):
        return web.json_response({"error": "missing or wrong X-API-Key"}, status=401)
    if state.faults.latency_seconds:
        await asyncio.sleep(state.faults.latency_seconds)
    if state.faults.should_fail():
        return web.json_response({"error": "injected failure"}, status=500)
    response = await handler(request)
    cookie = state.config.session_cookie
    response.set_cookie("session", secrets.token_hex(8), secure=cookie.secure or None,
                        httponly=cookie.http_only or None, samesite=cookie.same_site or None)
    return response


# --- API handlers ---------------------------------------------------------------------------

async def _db(request: web.Request, func: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking repository call in a thread; pool exhaustion answers 503."""
    try:
        return await asyncio.to_thread(func, *args)
    except sa.exc.TimeoutError:
        raise web.HTTPServiceUnavailable(text='{"error": "database pool exhausted"}',
                                         content_type="application/json") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text='{"error": "body is not JSON"}',
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}',
                                 content_type="application/json")
    return body


def _item_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None


async def list_items(request: web.Request) -> web.Response:
    return web.json_response(await _db(request, request.app[STATE].repo.list_items))


async def create_item(request: web.Request) -> web.Response:
    body = await _json_body(request)
    name, price, stock = body.get("name"), body.get("price"), body.get("stock", 0)
    if not isinstance(name, str) or not isinstance(price, int | float) or not isinstance(stock, int):
        return web.json_response({"error": "want name (string), price (number), stock (int)"},
                                 status=400)
    item = await _db(request, request.app[STATE].repo.create_item, name, float(price), stock)
    return web.json_response(item, status=201)


async def get_item(request: web.Request) -> web.Response:
    item = await _db(request, request.app[STATE].repo.get_item, _item_id(request))
    if item is None:
        return web.json_response({"error": "no such item"}, status=404)
    return web.json_response(item)


async def update_item(request: web.Request) -> web.Response:
    body = await _json_body(request)
    item = await _db(request, request.app[STATE].repo.update_item, _item_id(request), body)
    if item is None:
        return web.json_response({"error": "no such item"}, status=404)
    return web.json_response(item)


async def delete_item(request: web.Request) -> web.Response:
    if not await _db(request, request.app[STATE].repo.delete_item, _item_id(request)):
        return web.json_response({"error": "no such item"}, status=404)
    return web.Response(status=204)


async def list_users(request: web.Request) -> web.Response:
    return web.json_response(await _db(request, request.app[STATE].repo.list_users))


async def order_summary(request: web.Request) -> web.Response:
    return web.json_response(await _db(request, request.app[STATE].repo.order_summary))


async def quote(request: web.Request) -> web.Response:
    state = request.app[STATE]
    trial = False
    if state.breaker_open:
        retry = state.breaker_retry_after
        if retry is None or time.monotonic() - state.breaker_opened_at < retry:
            state.downstream.labels("short_circuited").inc()
            return web.json_response({"price": 9.99, "degraded": True})
        trial = True  # half-open: this call decides
    if state.faults.downstream_errors:
        state.downstream.labels("error").inc()
        if trial:
            state.breaker_opened_at = time.monotonic()
        return web.json_response({"error": "pricing service failed"}, status=502)
    state.downstream.labels("success").inc()
    if trial:
        state.breaker_open = False
    return web.json_response({"price": 9.99, "degraded": False})


# --- admin ----------------------------------------------------------------------------------

def admin_auth(token: str | None) -> Callable[[Handler], Handler]:
    """Require `Authorization: Bearer <token>`; with no token configured, refuse everyone."""

    def wrap(handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            if token is None:
                return web.json_response({"error": "admin API disabled: DEMO_ADMIN_TOKEN unset"},
                                         status=403)
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorized"}, status=401)
            return await handler(request)

        return guarded

    return wrap


def _faults_view(state: DemoState) -> dict[str, Any]:
    return {**state.faults.as_dict(), "config_drift": state.drifted(),
            "circuit_breaker_open": state.breaker_open}


async def get_faults(request: web.Request) -> web.Response:
    return web.json_response(_faults_view(request.app[STATE]))


async def set_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    try:
        state.faults.update(body)
        patch = body.get("config_patch")
        if patch is not None:
            if not isinstance(patch, dict):
                raise FaultError("config_patch: expected an object")
            state.apply_patch(patch)
        if body.get("cors_drift") is True:
            state.drop_patch()
        if state.faults.pool_exhaustion and not state.hog.held:
            await asyncio.to_thread(state.hog.exhaust, state.engine, state.config.db_pool_size)
    except (FaultError, ConfigError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    log.info("faults now %s", _faults_view(state))
    return web.json_response(_faults_view(state))


async def clear_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.faults = Faults()
    state.hog.release()
    return web.json_response(_faults_view(state))


async def restart(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await asyncio.to_thread(state.restart)
    log.info("restarted")
    return web.json_response({"restarted": True, **_faults_view(state)})


async def circuit_breaker(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if body.get("state") not in ("open", "closed"):
        return web.json_response({"error": "state must be 'open' or 'closed'"}, status=400)
    retry = body.get("retry_after_seconds")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int | float)
                              or not 0 < retry <= 86400):
        return web.json_response({"error": "retry_after_seconds must be a number in (0, 86400]"},
                                 status=400)
    state.breaker_open = body["state"] == "open"
    state.breaker_retry_after = float(retry) if retry is not None else None
    state.breaker_opened_at = time.monotonic()
    return web.json_response({"state": body["state"], "retry_after_seconds": retry})


async def config_reload(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.reload()
    except ConfigError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"reloaded": True, "config_drift": state.drifted()})


async def config_restore(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.restore()
    except ConfigError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"restored": True, "config_drift": state.drifted()})


async def disk_cleanup(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.faults.disk_growth_bytes_per_second = 0
    freed = await asyncio.to_thread(state.spool.cleanup)
    return web.json_response({"freed_bytes": freed})


# --- app ------------------------------------------------------------------------------------

def create_app(settings: TargetSettings) -> web.Application:
    """Build the demo target application."""
    state = DemoState(settings)
    app = web.Application(middlewares=[metrics_middleware, headers_middleware, cors_middleware,
                                       api_middleware])
    app[STATE] = state

    async def ticker(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(tick(state, settings.tick_interval))
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        state.hog.release()
        state.engine.dispose()

    app.cleanup_ctx.append(ticker)

    async def ready() -> tuple[bool, str]:
        return True, ""

    add_standard_routes(app, state.registry, ready)
    r = app.router
    r.add_get("/api/v1/items", list_items)
    r.add_post("/api/v1/items", create_item)
    r.add_get("/api/v1/items/{id}", get_item)
    r.add_put("/api/v1/items/{id}", update_item)
    r.add_patch("/api/v1/items/{id}", update_item)
    r.add_delete("/api/v1/items/{id}", delete_item)
    r.add_get("/api/v1/users", list_users)
    r.add_get("/api/v1/orders/summary", order_summary)
    r.add_get("/api/v1/quote", quote)
    guard = admin_auth(settings.admin_token)
    r.add_get("/admin/faults", guard(get_faults))
    r.add_post("/admin/faults", guard(set_faults))
    r.add_delete("/admin/faults", guard(clear_faults))
    r.add_post("/admin/restart", guard(restart))
    r.add_post("/admin/circuit-breaker", guard(circuit_breaker))
    r.add_post("/admin/config/reload", guard(config_reload))
    r.add_post("/admin/config/restore", guard(config_restore))
    r.add_post("/admin/disk/cleanup", guard(disk_cleanup))
    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo target."""
    parser = ArgumentParser(prog="vigil demo-target", description="Run the demo target web API.")
    add_service_flags(parser, default_config=None, default_listen="127.0.0.1:8080")
    parser.add_argument("--state-dir", default=".vigil/demo-target",
                        help="live config, baseline, SQLite database and disk spool")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="SQLAlchemy URL (default: $DATABASE_URL, else SQLite in the state dir)")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    config = load_config(args.config_file) if args.config_file else DemoConfig()
    settings = TargetSettings(
        state_dir=Path(args.state_dir), config=config, database_url=args.database_url,
        api_key=os.environ.get("DEMO_API_KEY") or None,
        admin_token=os.environ.get("DEMO_ADMIN_TOKEN") or None,
    )
    try:
        app = create_app(settings)
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(None, "--database-url", f"cannot open database: {exc.__class__.__name__}") \
            from None
    run_app(app, args.listen_address, "vigil.demo.target")
    return 0


if __name__ == "__main__":
    from vigil.service import exit_on_error

    exit_on_error(main)()
