"""The CORS check against CORS layers this project did not write, each configured with a
well-known misconfiguration: aiohttp-cors and Starlette's CORSMiddleware (under uvicorn)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp_cors
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.exporter.config import parse_config

from tests.exporter.helpers import arun_checks, rules
from tests.exporter.servers import Servers, starlette_cors_app

APP = "https://app.example.com"


def cors_config(base_url: str, **cors: Any) -> Any:
    return parse_config(
        {
            "targets": [
                {
                    "name": "thirdparty",
                    "base_url": base_url,
                    "cors": {
                        "path": "/api/items",
                        "origins": [APP],
                        "required_methods": ["GET", "POST", "PATCH"],
                        "request_headers": ["Content-Type"],
                        **cors,
                    },
                }
            ]
        }
    )


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def test_aiohttp_cors_star_defaults_with_credentials(aiohttp_server: AiohttpServer) -> None:
    """The README-style `"*": ResourceOptions(allow_credentials=True, ...)` defaults reflect
    every origin with credentials; and the resource has no PATCH route."""
    app = web.Application()
    cors = aiohttp_cors.setup(
        app,
        defaults={
            "*": aiohttp_cors.ResourceOptions(
                allow_credentials=True, expose_headers="*", allow_headers="*"
            )
        },
    )
    resource = cors.add(app.router.add_resource("/api/items"))
    cors.add(resource.add_route("GET", _ok))
    cors.add(resource.add_route("POST", _ok))
    server = await aiohttp_server(app)
    result = (await arun_checks(cors_config(str(server.make_url("")).rstrip("/"))))["cors"]
    assert result.success, result.error
    found = {(f.rule, f.severity.value) for f in result.findings}
    assert ("origin_reflected", "critical") in found, found
    assert any(f.rule == "method_refused" and f.subject == f"{APP} PATCH" for f in result.findings)
    assert "null_origin_trusted" in rules(result)


async def test_aiohttp_cors_exact_origins_only_lacks_vary(aiohttp_server: AiohttpServer) -> None:
    """An exact allow-list passes every preflight; what remains is real: aiohttp-cors echoes
    the allowed origin but never sends Vary: Origin."""
    app = web.Application()
    cors = aiohttp_cors.setup(
        app,
        defaults={
            APP: aiohttp_cors.ResourceOptions(
                allow_credentials=True,
                allow_headers=("Content-Type",),
                allow_methods=["GET", "POST", "PATCH"],
            )
        },
    )
    resource = cors.add(app.router.add_resource("/api/items"))
    for method in ("GET", "POST", "PATCH"):
        cors.add(resource.add_route(method, _ok))
    server = await aiohttp_server(app)
    result = (
        await arun_checks(
            cors_config(
                str(server.make_url("")).rstrip("/"),
                methods=["GET", "POST", "PATCH"],
                simple_requests=["GET"],
            )
        )
    )["cors"]
    assert result.success, result.error
    assert [(f.rule, f.subject) for f in result.findings] == [("vary_origin_missing", APP)]
    allowed = {lab["method"]: v for lab, v in result.samples["vigil_cors_preflight_allowed"]}
    assert allowed == {"GET": 1.0, "POST": 1.0, "PATCH": 1.0}


@pytest.fixture
def starlette_server(servers: Servers) -> Callable[..., str]:
    """Serve a Starlette app with CORSMiddleware(**options) under uvicorn on loopback."""
    return lambda **options: servers.asgi(starlette_cors_app(**options))


async def test_starlette_origin_regex_too_broad(starlette_server: Callable[..., str]) -> None:
    """An allow_origin_regex meant for *.example.com subdomains also admits look-alike hosts
    (the dots are unescaped) and PATCH is missing from allow_methods."""
    url = starlette_server(
        allow_origin_regex=r"https://.*.example.com",
        allow_credentials=True,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
    )
    config = cors_config(url, disallowed_origins=["https://evil-example.com"])
    result = (await arun_checks(config))["cors"]
    assert result.success, result.error
    outside = [f for f in result.findings if f.rule == "origin_outside_allowlist"]
    assert any(f.subject == "https://evil-example.com" for f in outside), result.findings
    assert any(f.rule == "method_refused" and f.subject == f"{APP} PATCH" for f in result.findings)


async def test_starlette_wildcard_headers_with_credentials(
    starlette_server: Callable[..., str],
) -> None:
    """allow_headers=['*'] with credentials: Starlette echoes the requested headers, which is fine,
    but allow_origins=['*'] with allow_credentials=True makes it echo any origin."""
    url = starlette_server(
        allow_origins=["*"], allow_credentials=True, allow_methods=["*"], allow_headers=["*"]
    )
    result = (await arun_checks(cors_config(url)))["cors"]
    assert result.success, result.error
    assert "origin_reflected" in rules(result), result.findings
    reflected = next(f for f in result.findings if f.rule == "origin_reflected")
    assert reflected.severity.value == "critical"


async def test_starlette_exact_config_is_clean(starlette_server: Callable[..., str]) -> None:
    url = starlette_server(
        allow_origins=[APP],
        allow_credentials=True,
        allow_methods=["GET", "HEAD", "POST", "PATCH"],
        allow_headers=["Content-Type"],
    )
    result = (await arun_checks(cors_config(url, methods=["GET", "HEAD", "POST", "PATCH"])))["cors"]
    assert result.success and result.findings == [], result.findings
    await asyncio.sleep(0)
