"""Tiny web apps, one per instrumentation library, served on loopback for the preset tests.

`python -m tests.services.apps LIBRARY PORT [METRICS_PORT]` serves:
  GET /items/<n>   200, or 500 when n is 5 (an error the tests raise on purpose)
  GET /slow/<n>    200 after n milliseconds (latency the tests raise on purpose)
  GET /alloc/<n>   (Flask) keeps n more MiB of memory (growth the tests raise on purpose)
and the library's own metrics endpoint (/metrics, or METRICS_PORT for OpenTelemetry).
Each app uses the library the way its README tells users to; nothing is renamed.
With VIGIL_TEST_TLS_CERT and VIGIL_TEST_TLS_KEY set, the ASGI apps serve HTTPS.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

LIBRARIES = ("fastapi", "starlette", "flask", "django", "opentelemetry")
_HELD: list[bytearray] = []


def _fastapi() -> Any:
    from fastapi import FastAPI, HTTPException
    from prometheus_fastapi_instrumentator import Instrumentator

    app = FastAPI()

    @app.get("/items/{n}")
    def item(n: int) -> dict[str, int]:
        if n == 5:
            raise HTTPException(status_code=500)
        return {"n": n}

    @app.get("/slow/{ms}")
    def slow(ms: int) -> dict[str, int]:
        time.sleep(ms / 1000)
        return {"ms": ms}

    Instrumentator().instrument(app).expose(app)
    return app


def _starlette_routes() -> list[Any]:
    import asyncio

    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def item(request: Request) -> PlainTextResponse:
        n = int(request.path_params["n"])
        return PlainTextResponse("error" if n == 5 else "ok", status_code=500 if n == 5 else 200)

    async def slow(request: Request) -> PlainTextResponse:
        await asyncio.sleep(int(request.path_params["ms"]) / 1000)
        return PlainTextResponse("ok")

    return [Route("/items/{n}", item), Route("/slow/{ms}", slow)]


def _starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route
    from starlette_exporter import PrometheusMiddleware, handle_metrics

    app = Starlette(routes=[*_starlette_routes(), Route("/metrics", handle_metrics)])
    app.add_middleware(PrometheusMiddleware)
    return app


def _opentelemetry(metrics_port: int) -> Any:
    from opentelemetry import metrics
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.resources import Resource
    from prometheus_client import start_http_server
    from starlette.applications import Starlette

    start_http_server(metrics_port, addr="127.0.0.1")
    provider = MeterProvider(resource=Resource.create({"service.name": "otel-app"}),
                             metric_readers=[PrometheusMetricReader()])
    metrics.set_meter_provider(provider)
    return OpenTelemetryMiddleware(Starlette(routes=_starlette_routes()))


def _flask() -> Any:
    from flask import Flask, abort
    from prometheus_flask_exporter import PrometheusMetrics

    app = Flask("vigil-preset-test")
    PrometheusMetrics(app)

    @app.get("/items/<int:n>")
    def item(n: int) -> str:
        if n == 5:
            abort(500)
        return "ok"

    @app.get("/slow/<int:ms>")
    def slow(ms: int) -> str:
        time.sleep(ms / 1000)
        return "ok"

    @app.get("/alloc/<int:mib>")
    def alloc(mib: int) -> str:
        _HELD.append(bytearray(os.urandom(mib * 2**20)))
        return f"holding {len(_HELD)} blocks"

    return app


def _django() -> Any:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False, SECRET_KEY="preset-test-only", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django_prometheus"],
        MIDDLEWARE=["django_prometheus.middleware.PrometheusBeforeMiddleware",
                    "django_prometheus.middleware.PrometheusAfterMiddleware"],
    )
    django.setup()
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def _django_urls() -> list[Any]:
    from django.http import HttpRequest, HttpResponse
    from django.urls import include, path

    def item(request: HttpRequest, n: int) -> HttpResponse:
        return HttpResponse("error" if n == 5 else "ok", status=500 if n == 5 else 200)

    def slow(request: HttpRequest, ms: int) -> HttpResponse:
        time.sleep(ms / 1000)
        return HttpResponse("ok")

    return [path("items/<int:n>", item, name="item"), path("slow/<int:ms>", slow, name="slow"),
            path("", include("django_prometheus.urls"))]


def __getattr__(name: str) -> Any:  # Django reads urlpatterns from ROOT_URLCONF lazily
    if name == "urlpatterns":
        return _django_urls()
    raise AttributeError(name)


def serve(library: str, port: int, metrics_port: int = 0) -> None:
    if library in ("fastapi", "starlette", "opentelemetry"):
        import uvicorn

        app = {"fastapi": _fastapi, "starlette": _starlette}.get(library)
        asgi = app() if app else _opentelemetry(metrics_port)
        tls = {"ssl_certfile": os.environ["VIGIL_TEST_TLS_CERT"],
               "ssl_keyfile": os.environ["VIGIL_TEST_TLS_KEY"]} if "VIGIL_TEST_TLS_CERT" in os.environ else {}
        uvicorn.run(asgi, host="127.0.0.1", port=port, log_level="warning", **tls)  # type: ignore[arg-type]
        return
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    wsgi = _flask() if library == "flask" else _django()
    make_server("127.0.0.1", port, wsgi, server_class=Server, handler_class=Quiet).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in LIBRARIES:
        sys.exit(f"usage: python -m tests.services.apps {{{'|'.join(LIBRARIES)}}} PORT [METRICS_PORT]")
    serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 0)
