"""The remediator's aiohttp app: the Alertmanager webhook, the admin API and standard routes."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from vigil.remediator import admin
from vigil.remediator.auth import Credentials, load_credentials
from vigil.remediator.config import RemediatorConfig
from vigil.remediator.console import setup_console
from vigil.remediator.encoding import BodyError, decode_body
from vigil.remediator.engine import Engine
from vigil.remediator.ingest import IngestQueue
from vigil.remediator.intelligence import IntelligenceCollector
from vigil.remediator.keys import CONFIG, METRICS, REGISTRY, STORE
from vigil.remediator.matching import match_alert
from vigil.remediator.metrics import RemediatorMetrics
from vigil.remediator.models import INCIDENT_STATES
from vigil.remediator.openapi import OPENAPI
from vigil.remediator.payload import PayloadError, parse_payload, parse_time
from vigil.remediator.store import IngestResult, Store

from vigil.service import add_standard_routes

__all__ = ["RUNTIME", "Runtime", "create_app"]

log = logging.getLogger("vigil.remediator")


@dataclass
class Runtime:
    """Objects that exist only while the app runs (created in cleanup_ctx)."""

    replica: str
    heartbeat_interval: float
    sweep_interval: float
    engine: Engine | None = None
    queue: IngestQueue | None = None
    session: aiohttp.ClientSession | None = None
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


RUNTIME: web.AppKey[Runtime] = web.AppKey("runtime")
WEBHOOK_CREDS: web.AppKey[Credentials] = web.AppKey("webhook_creds")
ADMIN_CREDS: web.AppKey[Credentials] = web.AppKey("admin_creds")
PRINCIPAL: web.RequestKey[str] = web.RequestKey("principal", str)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status,
                             dumps=lambda d: json.dumps(d, default=_json_default))


def error(status: int, message: str) -> web.Response:
    return json_response({"status": "error", "error": message}, status)


def auth_middleware(webhook: Credentials, admin: Credentials) -> Any:
    """Check the webhook's or the admin API's credentials before the handler runs."""

    @web.middleware
    async def middleware(request: web.Request,
                         handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                         ) -> web.StreamResponse:
        path = request.path
        if path == "/api/v1/alerts":
            creds, realm = webhook, "webhook"
        elif path.startswith("/api/v1/") and path != "/api/v1/openapi.json":
            if not admin.configured:
                return error(403, "the admin API is disabled: configure admin.bearer_token_file "
                                  "or admin.basic_auth")
            creds, realm = admin, "admin"
        else:
            return await handler(request)
        if creds.configured:
            principal = creds.check(request)
            if principal is None:
                if realm == "webhook":
                    request.app[METRICS].notifications.labels("unauthorized").inc()
                resp = error(401, "missing or invalid credentials")
                resp.headers["WWW-Authenticate"] = f'Bearer realm="vigil-remediator-{realm}"'
                return resp
            request[PRINCIPAL] = principal
        else:
            request[PRINCIPAL] = "anonymous"
        return await handler(request)

    return middleware


STORE_ANSWER_SECONDS = 10.0
ADMISSIONS = 2  # admissions of committed incidents running at once (see _lifecycle)
# an admission starts this long after the commit that calls it, so that the commits of a
# burst are correlated together: per admission, correlation costs about as much CPU for one
# incident as for twenty (a handful of statements), and a remediation waits 50 ms more
ADMISSION_DELAY = 0.05
COUNT_DELAY = 0.2


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def receive(request: web.Request) -> web.Response:
    """POST /api/v1/alerts: store, deduplicate and schedule every alert of one notification."""
    metrics = request.app[METRICS]
    config = request.app[CONFIG]
    runtime = request.app[RUNTIME]
    if request.content_type != "application/json":
        metrics.notifications.labels("invalid").inc()
        return error(415, "Content-Type must be application/json")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.notifications.labels("invalid").inc()
        return error(413, f"body larger than {config.webhook.max_body_bytes} bytes")
    try:
        body = decode_body(body, request.headers.get("Content-Encoding"),
                           config.webhook.max_body_bytes)
    except BodyError as exc:
        metrics.notifications.labels("invalid").inc()
        return error(exc.status, str(exc))
    try:
        data = json.loads(body, parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        metrics.notifications.labels("invalid").inc()
        return error(400, "body is not UTF-8")
    except json.JSONDecodeError as exc:
        metrics.notifications.labels("invalid").inc()
        return error(400, f"invalid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")
    except RecursionError:
        metrics.notifications.labels("invalid").inc()
        return error(400, "invalid JSON: nested too deeply")
    except ValueError as exc:  # NaN/Infinity, integers beyond the digit limit
        metrics.notifications.labels("invalid").inc()
        return error(400, f"invalid JSON: {str(exc)[:200]}")
    try:
        parsed = parse_payload(data)
    except PayloadError as exc:
        metrics.notifications.labels("invalid").inc()
        return error(400, str(exc))
    matches = [match_alert(config, a.as_dict()) for a in parsed.alerts]
    assert runtime.queue is not None
    try:
        # bounded: a store that stops answering gets a 503 (Alertmanager retries; a late
        # commit of this notification is harmless, the alerts are deduplicated)
        async with asyncio.timeout(STORE_ANSWER_SECONDS):  # no extra task per request
            result = await runtime.queue.submit((parsed, matches, config.dry_run))
    except Exception as exc:  # noqa: BLE001 - any store failure: let Alertmanager retry
        metrics.notifications.labels("store_error").inc()
        log.error("cannot store notification: %s", exc.__class__.__name__)
        return error(503, "incident store unavailable: notification not stored, retry later")
    metrics.notifications.labels("accepted").inc()
    for outcome in result.outcomes:
        metrics.alerts.labels(outcome).inc()
    return json_response({"status": "success", "alerts": [
        {"fingerprint": a.fingerprint, "status": a.status, "outcome": o}
        for a, o in zip(parsed.alerts, result.outcomes, strict=True)]})


async def _db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def list_incidents(request: web.Request) -> web.Response:
    q = request.query
    state = q.get("state")
    if state and state not in INCIDENT_STATES:
        return error(400, f"state: expected one of {', '.join(INCIDENT_STATES)}")
    try:
        limit = int(q.get("limit", "100"))
        offset = int(q.get("offset", "0"))
    except ValueError:
        return error(400, "limit and offset must be integers")
    if not 1 <= limit <= 1000 or not 0 <= offset <= MAX_ID:
        return error(400, "limit must be 1..1000 and offset >= 0")
    for key in ("procedure", "alertname"):
        if "\x00" in q.get(key, "") or len(q.get(key, "")) > 255:
            return error(400, f"{key}: at most 255 characters, no NUL")
    since = None
    if q.get("since"):
        try:
            since = parse_time(q["since"], "since")
        except PayloadError as exc:
            return error(400, str(exc))
    rows = await _db(request.app[STORE].list_incidents, state=state, procedure=q.get("procedure"),
                     alertname=q.get("alertname"), since=since, limit=limit, offset=offset)
    return json_response({"status": "success", "incidents": rows})


MAX_ID = admin.MAX_ID
_incident_id = admin.incident_id


async def get_incident(request: web.Request) -> web.Response:
    data = await admin.incident_details(request.app, _incident_id(request))
    if data is None:
        return error(404, "no such incident")
    return json_response({"status": "success", **data})


def _decision(act: Callable[..., Awaitable[dict[str, Any]]], status: int
              ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST approve or deny: admin.approve / admin.deny as the authenticated admin."""

    async def handler(request: web.Request) -> web.Response:
        try:
            incident = await act(request.app, _incident_id(request),
                                 f"admin:{request[PRINCIPAL]}", "api")
        except admin.ActionRefused as exc:
            return error(exc.status, str(exc))
        return json_response({"status": "success", "incident": incident}, status)

    return handler


async def control_get(request: web.Request) -> web.Response:
    state = admin.control_state(request.app)
    return json_response({"status": "success", "paused": state["paused"],
                          "paused_procedures": state["paused_procedures"],
                          "dry_run": request.app[CONFIG].dry_run,
                          "in_progress": state["in_progress"]})


def _pause_handler(paused: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        await admin.set_paused(request.app, paused, f"admin:{request[PRINCIPAL]}")
        return json_response({"status": "success", "paused": paused})

    return handler


def _procedure_pause_handler(paused: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            await admin.set_paused(request.app, paused, f"admin:{request[PRINCIPAL]}", name)
        except admin.ActionRefused as exc:
            return error(exc.status, str(exc))
        return json_response({"status": "success", "procedure": name, "paused": paused})

    return handler


async def openapi(_: web.Request) -> web.Response:
    return json_response(OPENAPI)


def default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def create_app(config: RemediatorConfig, *, store: Store | None = None,
               registry: CollectorRegistry | None = None, heartbeat_interval: float = 1.0,
               sweep_interval: float = 5.0) -> web.Application:
    """Build the remediator: webhook, admin API, /metrics, health; migrate the store on start."""
    store = store or Store(config.resolved_database_url())
    registry = registry or CollectorRegistry()
    webhook_creds = load_credentials(config, config.webhook, "webhook")
    admin_creds = load_credentials(config, config.admin, "admin")
    # bodies arrive raw: the webhook decodes Content-Encoding itself (remediator/encoding.py),
    # so a corrupt or unsupported encoding gets a 4xx instead of a parser traceback and a 500
    app = web.Application(client_max_size=config.webhook.max_body_bytes,
                          middlewares=[auth_middleware(webhook_creds, admin_creds)],
                          handler_args={"auto_decompress": False})
    app[CONFIG] = config
    app[STORE] = store
    app[REGISTRY] = registry
    runtime = Runtime(config.replica_id or default_replica(), heartbeat_interval, sweep_interval)
    app[METRICS] = RemediatorMetrics(
        registry, lambda: runtime.engine.open_count if runtime.engine else None)
    app[RUNTIME] = runtime
    app[WEBHOOK_CREDS] = webhook_creds
    app[ADMIN_CREDS] = admin_creds
    if not webhook_creds.configured:
        log.warning("the webhook accepts unauthenticated posts: set webhook.bearer_token_file")
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/api/v1/alerts", receive)
    app.router.add_get("/api/v1/incidents", list_incidents)
    app.router.add_get("/api/v1/incidents/{id}", get_incident)
    app.router.add_post("/api/v1/incidents/{id}/approve", _decision(admin.approve, 202))
    app.router.add_post("/api/v1/incidents/{id}/deny", _decision(admin.deny, 200))
    app.router.add_get("/api/v1/control", control_get)
    app.router.add_post("/api/v1/control/pause", _pause_handler(True))
    app.router.add_post("/api/v1/control/resume", _pause_handler(False))
    app.router.add_post("/api/v1/control/procedures/{name}/pause", _procedure_pause_handler(True))
    app.router.add_post("/api/v1/control/procedures/{name}/resume",
                        _procedure_pause_handler(False))
    app.router.add_get("/api/v1/openapi.json", openapi)
    setup_console(app, admin_creds)

    async def ready() -> tuple[bool, str]:
        try:
            await asyncio.wait_for(_db(store.count_active_incidents), 5)
        except TimeoutError:
            return False, "incident store unavailable (no answer within 5s)"
        except Exception as exc:  # noqa: BLE001
            return False, f"incident store unavailable ({exc.__class__.__name__})"
        return True, ""

    registry.register(IntelligenceCollector(
        lambda: runtime.engine.intel if runtime.engine else None))
    add_standard_routes(app, registry, ready)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    config, store, runtime = app[CONFIG], app[STORE], app[RUNTIME]
    await asyncio.to_thread(store.migrate)
    runtime.session = aiohttp.ClientSession()
    engine = Engine(config, store, app[METRICS], runtime.session, runtime.replica,
                    heartbeat_interval=runtime.heartbeat_interval,
                    sweep_interval=runtime.sweep_interval)
    runtime.engine = engine

    # Admission (correlation, then acting) of committed incidents. Batches committed while
    # an admission waits or runs go together into the next one: in a storm, correlation
    # works in large batches (each group ranked once per admission, not once per commit)
    # instead of one task per commit competing with the webhook for the CPU. Two run at
    # once, so a slow ranking (Prometheus evidence) does not hold up every later incident.
    pending: tuple[list[int], list[int]] = ([], [])
    admitting = 0

    async def admit_pending() -> None:
        nonlocal pending, admitting
        try:
            await asyncio.sleep(ADMISSION_DELAY)
            while pending[0] or pending[1]:
                (new, escalate), pending = pending, ([], [])
                try:
                    await engine.admit(new, escalate)
                except Exception:  # the sweeper picks up what stayed open
                    log.exception("admitting %d incidents failed", len(new) + len(escalate))
        finally:
            admitting -= 1

    # vigil_incidents_open is re-counted after commits, at most every COUNT_DELAY: counting
    # after every commit kept a thread and a connection busy counting under load
    counting = False

    async def count_soon() -> None:
        nonlocal counting
        try:
            await asyncio.sleep(COUNT_DELAY)
        finally:
            counting = False
        await engine.refresh_open_count()

    async def on_committed(results: list[IngestResult]) -> None:
        nonlocal admitting, counting
        for result in results:
            for incident_id in result.closed:
                engine.cancel(incident_id)
            for _, seconds in result.resolved:
                app[METRICS].resolution.observe(seconds)
            pending[0].extend(result.new_incidents)
            pending[1].extend(result.escalate)
        if (pending[0] or pending[1]) and admitting < ADMISSIONS:
            admitting += 1
            runtime.spawn(admit_pending())
        if not counting:  # else a count that starts after this commit is already due
            counting = True
            runtime.spawn(count_soon())

    runtime.queue = IngestQueue(store, on_committed, writers=config.store_writers)
    runtime.queue.start()
    await engine.start()
    runtime.spawn(engine.sweep_forever())
    try:
        yield
    finally:
        await runtime.queue.stop()
        for task in list(runtime.background):
            task.cancel()
        await asyncio.gather(*runtime.background, return_exceptions=True)
        await engine.stop()
        await runtime.session.close()
        await asyncio.to_thread(store.dispose)
