"""Third-party web frameworks served on loopback (dynamic ports, threads) for the check tests:
Starlette under uvicorn, Flask and Django under werkzeug's WSGI server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from vigil.procs import free_port


class Servers:
    """Start servers during a test; every one is stopped when the test ends."""

    def __init__(self) -> None:
        self._stops: list[Callable[[], None]] = []

    def asgi(self, app: Any) -> str:
        import uvicorn

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

        def stop() -> None:
            server.should_exit = True
            thread.join(5)

        self._stops.append(stop)
        return f"http://127.0.0.1:{port}"

    def wsgi(self, app: Any) -> str:
        from werkzeug.serving import make_server

        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def stop() -> None:
            server.shutdown()
            thread.join(5)

        self._stops.append(stop)
        return f"http://127.0.0.1:{server.server_port}"

    def close(self) -> None:
        for stop in reversed(self._stops):
            stop()


def starlette_cors_app(**options: Any) -> Any:
    """A Starlette app with CORSMiddleware(**options), as Starlette's docs configure it."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def items(_: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/api/items", items, methods=["GET", "POST", "PATCH"])],
        middleware=[Middleware(CORSMiddleware, **options)],
    )


def flask_cors_app(**options: Any) -> Any:
    """A Flask app with flask-cors' CORS(app, **options), as its docs configure it."""
    from flask import Flask, jsonify
    from flask_cors import CORS

    app = Flask("vigil_test_flask_cors")

    @app.route("/api/items", methods=["GET", "POST", "PATCH"])
    def items() -> Any:
        return jsonify(ok=True)

    CORS(app, **options)
    return app


_DJANGO_READY = False


def _django_setup() -> None:
    global _DJANGO_READY
    if _DJANGO_READY:
        return
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="vigil-tests-not-a-secret-0123456789abcdef",
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF="tests.exporter.django_urls",
            INSTALLED_APPS=["corsheaders"],
            MIDDLEWARE=[
                "corsheaders.middleware.CorsMiddleware",
                "django.middleware.common.CommonMiddleware",
            ],
            USE_TZ=True,
        )
    django.setup()
    _DJANGO_READY = True


@contextmanager
def django_cors_app(**cors_settings: Any) -> Iterator[Any]:
    """A Django WSGI app with django-cors-headers, its settings (CORS_*) as its README sets
    them; they stay in force while the context is open (Django settings are global)."""
    _django_setup()
    from django.core.wsgi import get_wsgi_application
    from django.test import override_settings

    with override_settings(**cors_settings):
        yield get_wsgi_application()
