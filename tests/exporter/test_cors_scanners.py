"""The CORS check finds what CORS scanners (Corsy, CORScanner, CORStest) find, without being
told the attacker origin: each CORS layer below is configured only as its docs say, with a
misconfiguration from the wild, and the finding names the probe origin it trusted. The same
layers configured correctly stay clean."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.exporter.base import CheckResult
from vigil.exporter.config import parse_config

from tests.exporter.docs_claims import assert_documented
from tests.exporter.helpers import arun_checks
from tests.exporter.servers import (
    Servers,
    django_cors_app,
    flask_cors_app,
    starlette_cors_app,
)

WWW = "https://www.example.com"
APP = "https://app.example.com"


def config(base_url: str, origins: list[str], **cors: Any) -> Any:
    return parse_config(
        {
            "targets": [
                {
                    "name": "scanned",
                    "base_url": base_url,
                    "cors": {
                        "path": "/api/items",
                        "origins": origins,
                        "methods": ["GET", "POST", "PATCH"],
                        "request_headers": ["Content-Type"],
                        **cors,
                    },
                }
            ]
        }
    )


async def scan(base_url: str, origins: list[str], **cors: Any) -> CheckResult:
    result = (await arun_checks(config(base_url, origins, **cors), timeout=30))["cors"]
    assert result.success, result.error
    assert_documented("cors", result)
    return result


def found(result: CheckResult) -> dict[str, tuple[str, str]]:
    """probe origin -> (rule, severity) of the origin findings."""
    return {
        f.subject: (f.rule, f.severity.value)
        for f in result.findings
        if f.rule.startswith("origin_") or f.rule == "null_origin_trusted"
    }


def hand_written(accept: Callable[[str], bool]) -> web.Application:
    """A handler that echoes an accepted Origin with credentials, as hand-written CORS does."""

    async def handler(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        headers = {"Vary": "Origin"}
        if origin and accept(origin):
            headers |= {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "GET, POST, PATCH",
                "Access-Control-Allow-Headers": "Content-Type",
            }
        return web.Response(status=204 if request.method == "OPTIONS" else 200, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/api/items", handler)
    return app


async def test_hand_written_suffix_match(aiohttp_server: AiohttpServer) -> None:
    """`origin.endswith("example.com")`, the classic suffix match, also trusts evilexample.com
    (and the http:// look-alikes); the finding names each probe origin."""
    app = hand_written(lambda origin: origin.endswith("example.com"))
    server = await aiohttp_server(app)
    result = await scan(str(server.make_url("")).rstrip("/"), ["https://example.com"])
    hits = found(result)
    assert hits["https://evilexample.com"] == ("origin_pre_domain", "critical"), hits
    assert hits["http://evilexample.com"] == ("origin_pre_domain", "critical")
    assert hits["http://example.com"] == ("origin_http_downgrade", "critical")
    # A suffix match is not a prefix match: the post-domain probes are refused.
    assert "https://example.com.evil.example" not in hits
    finding = next(f for f in result.findings if f.subject == "https://evilexample.com")
    assert "https://evilexample.com" in finding.message and "suffix" in finding.message


async def test_hand_written_exact_list_is_clean(aiohttp_server: AiohttpServer) -> None:
    allowed = {APP, "https://admin.example.com"}
    server = await aiohttp_server(hand_written(lambda origin: origin in allowed))
    result = await scan(str(server.make_url("")).rstrip("/"), sorted(allowed))
    assert result.findings == [], result.findings


async def test_hand_written_substring_and_unanchored_regex(aiohttp_server: AiohttpServer) -> None:
    """`origin in ALLOWED` on a string, and re.match without `$`: substring, post-domain and
    special-character probes get through; null and a code sandbox are trusted by name."""

    allowed_text = f"{APP} https://admin.example.com"

    async def substring(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        ok = bool(origin) and origin in allowed_text
        return web.Response(headers={"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                                     "Access-Control-Allow-Credentials": "true"} if ok else {})

    async def prefix(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        ok = re.match(r"https://app\.example\.com", origin) or origin in ("null",
                                                                          "https://codepen.io")
        return web.Response(headers={"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
                            if ok else {})

    app = web.Application()
    app.router.add_route("*", "/api/items", substring)
    app.router.add_route("*", "/api/prefix", prefix)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    hits = found(await scan(base, [APP], methods=["GET"], request_headers=[]))
    assert hits["https://app.example.co"] == ("origin_substring", "critical"), hits
    assert "https://evilapp.example.com" not in hits

    hits = found(await scan(base, [APP], path="/api/prefix", methods=["GET"], request_headers=[],
                            credentials=False))
    assert hits["https://app.example.com.evil.example"] == ("origin_post_domain", "warning"), hits
    assert hits["https://app.example.com_.evil.example"] == ("origin_special_chars", "warning")
    assert hits["https://app.example.com%60.evil.example"] == ("origin_special_chars", "warning")
    assert hits["https://codepen.io"] == ("origin_third_party", "warning")
    assert hits["null"] == ("null_origin_trusted", "warning")
    assert "http://app.example.com" not in hits  # the regex names https only


def starlette_regex(servers: Servers, regex: str, credentials: bool = True) -> str:
    """Starlette's CORSMiddleware with allow_origin_regex, as its docs configure it."""
    return servers.asgi(
        starlette_cors_app(
            allow_origin_regex=regex,
            allow_credentials=credentials,
            allow_methods=["GET", "POST", "PATCH"],
            allow_headers=["Content-Type"],
        )
    )


async def test_starlette_unescaped_dot(servers: Servers) -> None:
    """allow_origin_regex with an unescaped dot trusts wwwXexample.com."""
    url = starlette_regex(servers, r"https://www.example.com")
    result = await scan(url, [WWW])
    hits = found(result)
    assert hits == {
        "https://wwwxexample.com": ("origin_unescaped_dot", "critical"),
        "https://www.examplexcom": ("origin_unescaped_dot", "critical"),
    }, hits
    assert "escape every dot" in result.findings[0].fix


async def test_starlette_any_subdomain_and_third_party(servers: Servers) -> None:
    """A regex for every subdomain is a warning with credentials (not the pre-domain probes it
    also admits); a github.io pattern trusts pages anyone can publish; https? trusts http."""
    url = starlette_regex(servers, r"https?://([a-z0-9-]+\.example\.com|[a-z0-9-]+\.github\.io)")
    hits = found(await scan(url, [APP]))
    assert hits["https://vigilprobe.example.com"] == ("origin_any_subdomain", "warning")
    assert hits["https://vigilprobe.github.io"] == ("origin_third_party", "critical")
    assert hits["http://app.example.com"] == ("origin_http_downgrade", "critical")
    assert "https://evilapp.example.com" not in hits  # explained by the subdomain finding
    assert "https://evilexample.com" not in hits


async def test_starlette_any_subdomain_without_credentials_is_info(servers: Servers) -> None:
    url = starlette_regex(servers, r"https://[a-z0-9-]+\.example\.com", credentials=False)
    hits = found(await scan(url, [APP], credentials=False))
    assert hits == {
        "https://vigilprobe.example.com": ("origin_any_subdomain", "info")
    }, hits


async def test_starlette_escaped_anchored_regex_is_clean(servers: Servers) -> None:
    url = starlette_regex(servers, r"https://(app|admin)\.example\.com")
    result = await scan(url, [APP, "https://admin.example.com"])
    assert result.findings == [], result.findings


async def test_django_cors_headers_unescaped_dot(servers: Servers) -> None:
    """CORS_ALLOWED_ORIGIN_REGEXES with an unescaped dot (django-cors-headers matches from the
    start, so `$` alone does not help)."""
    with django_cors_app(
        CORS_ALLOWED_ORIGIN_REGEXES=[r"^https://www.example.com$"],
        CORS_ALLOW_CREDENTIALS=True,
    ) as app:
        hits = found(await scan(servers.wsgi(app), [WWW]))
    assert hits == {
        "https://wwwxexample.com": ("origin_unescaped_dot", "critical"),
        "https://www.examplexcom": ("origin_unescaped_dot", "critical"),
    }, hits


async def test_django_cors_headers_any_subdomain(servers: Servers) -> None:
    with django_cors_app(
        CORS_ALLOWED_ORIGIN_REGEXES=[r"^https://\w+\.example\.com$"],
        CORS_ALLOW_CREDENTIALS=True,
    ) as app:
        hits = found(await scan(servers.wsgi(app), [APP]))
    assert hits == {
        "https://vigilprobe.example.com": ("origin_any_subdomain", "warning")
    }, hits


async def test_django_cors_headers_exact_list_is_clean(servers: Servers) -> None:
    with django_cors_app(
        CORS_ALLOWED_ORIGINS=[APP, "https://admin.example.com"], CORS_ALLOW_CREDENTIALS=True
    ) as app:
        result = await scan(servers.wsgi(app), [APP, "https://admin.example.com"])
    assert result.findings == [], result.findings


async def test_flask_cors_suffix_regex(servers: Servers) -> None:
    """flask-cors treats an origin with regex characters as a pattern; `.*example\\.com` is a
    suffix match that trusts evilexample.com, over http too."""
    url = servers.wsgi(
        flask_cors_app(origins=[r"https?://.*example\.com"], supports_credentials=True)
    )
    hits = found(await scan(url, ["https://example.com"]))
    assert hits["https://evilexample.com"] == ("origin_pre_domain", "critical"), hits
    assert hits["http://example.com"] == ("origin_http_downgrade", "critical")


async def test_flask_cors_exact_list_is_clean(servers: Servers) -> None:
    url = servers.wsgi(
        flask_cors_app(origins=[APP, "https://admin.example.com"], supports_credentials=True)
    )
    result = await scan(url, [APP, "https://admin.example.com"])
    assert result.findings == [], result.findings


async def test_disallowed_origins_stay_an_extra(servers: Servers) -> None:
    """Listed origins are probed too, and reported as origin_outside_allowlist."""
    url = starlette_regex(
        servers, r"https://(app\.example\.com|partner\.example\.net)", credentials=False
    )
    hits = found(await scan(url, [APP], credentials=False,
                            disallowed_origins=["https://partner.example.net"]))
    assert hits == {"https://partner.example.net": ("origin_outside_allowlist", "warning")}, hits


async def test_required_headers_choose_which_refused_headers_are_findings(
    servers: Servers,
) -> None:
    """Every request header is probed (the matrix shows a refused one), but only those in
    required_headers (default: all) become findings."""
    url = servers.asgi(
        starlette_cors_app(allow_origins=[APP], allow_credentials=True,
                           allow_methods=["GET", "POST", "PATCH"], allow_headers=["Content-Type"])
    )
    headers = ["Content-Type", "X-Debug"]
    everything = await scan(url, [APP], request_headers=headers)
    refused = {f.subject for f in everything.findings if f.rule == "header_refused"}
    assert refused == {f"{APP} {m} X-Debug" for m in ("GET", "POST", "PATCH")}, refused
    chosen = await scan(url, [APP], request_headers=headers, required_headers=["content-type"])
    assert chosen.findings == [], chosen.findings
    allowed = {lab["method"]: v for lab, v in chosen.samples["vigil_cors_preflight_allowed"]}
    assert allowed == {"GET": 0.0, "POST": 0.0, "PATCH": 0.0}


async def test_wildcard_public_api_and_unreadable_responses(aiohttp_server: AiohttpServer) -> None:
    """`*` without credentials is info (a public API); a preflight that passes while the
    actual response lacks CORS headers is critical; a probe that times out is a warning."""

    async def public(request: web.Request) -> web.Response:
        return web.Response(headers={"Access-Control-Allow-Origin": "*",
                                     "Access-Control-Allow-Methods": "GET, POST, PATCH"},
                            status=204 if request.method == "OPTIONS" else 200)

    async def preflight_only(request: web.Request) -> web.Response:
        origin = request.headers.get("Origin", "")
        if request.method == "OPTIONS" and origin == APP:
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "GET, POST, PATCH", "Vary": "Origin"})
        if origin == "null":
            await asyncio.sleep(2)  # one probe never answers within request_timeout
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/api/items", public)
    app.router.add_route("*", "/api/legacy", preflight_only)
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    result = await scan(base, [APP], credentials=False, request_headers=[])
    assert {(f.rule, f.severity.value) for f in result.findings} == {("wildcard_origin", "info")}

    result = await scan(base, [APP], path="/api/legacy", request_headers=[], request_timeout=0.5)
    found_rules = {(f.rule, f.subject, f.severity.value) for f in result.findings}
    assert ("response_unreadable", f"{APP} GET", "critical") in found_rules, found_rules
    assert any(rule == "probe_failed" and sev == "warning" for rule, _, sev in found_rules)
