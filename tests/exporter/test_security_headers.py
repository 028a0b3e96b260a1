"""The security check's header judgments (CSP, Referrer-Policy, COOP, CORP, the https
redirect, HSTS and cookies) against real servers with the header mistakes found in the wild,
and its score on the Mozilla HTTP Observatory's scale, compared with the Observatory's
published modifiers (mdn/mdn-http-observatory src/grader/charts.js)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.exporter.base import CheckResult
from vigil.exporter.config import parse_config
from vigil.exporter.observatory import grade_for

from tests.exporter.docs_claims import assert_documented
from tests.exporter.helpers import arun_checks
from tests.exporter.servers import Servers
from tests.exporter.test_security import SAFE, make_cert

STRICT_CSP = "default-src 'self'; object-src 'none'; frame-ancestors 'none'"


async def serve(aiohttp_server: AiohttpServer, headers: dict[str, str], *,
                cookies: tuple[str, ...] | list[str] = (),
                ssl_ctx: ssl.SSLContext | None = None) -> Any:
    async def page(_: web.Request) -> web.Response:
        resp = web.Response(text="ok", headers=headers)
        for cookie in cookies:
            resp.headers.add("Set-Cookie", cookie)
        return resp

    app = web.Application()
    app.router.add_get("/", page)
    return await aiohttp_server(app, ssl=ssl_ctx)


async def judge(base_url: str, **security: Any) -> CheckResult:
    target: dict[str, Any] = {"name": "web", "base_url": base_url, "security": security}
    if "tls_ca_file" in security:
        target["tls_ca_file"] = security.pop("tls_ca_file")
    result = (await arun_checks(parse_config({"targets": [target]})))["security"]
    assert result.success, result.error
    assert_documented("security", result)
    return result


def observatory(result: CheckResult) -> tuple[float, str]:
    [(labels, value)] = result.samples["vigil_security_observatory_score"]
    return value, labels["grade"]


def rules_of(result: CheckResult) -> dict[str, str]:
    return {f.rule: f.severity.value for f in result.findings}


@pytest.mark.parametrize(
    ("csp", "expected"),
    [
        (None, {"csp_missing": "warning"}),
        ("script-src 'self' 'unsafe-inline'; object-src 'none'", {"csp_unsafe_inline": "warning"}),
        ("script-src 'self' data:; object-src 'none'", {"csp_unsafe_inline": "warning"}),
        ("default-src 'self' 'unsafe-eval'", {"csp_unsafe_eval": "warning"}),
        ("default-src *", {"csp_broad_source": "warning"}),
        ("script-src https:; object-src 'none'", {"csp_broad_source": "warning"}),
        ("script-src 'self'", {"csp_objects_unrestricted": "warning"}),
        ("style-src 'self'; object-src 'none'", {"csp_scripts_unrestricted": "warning"}),
    ],
)
async def test_csp_mistakes(
    aiohttp_server: AiohttpServer, csp: str | None, expected: dict[str, str]
) -> None:
    headers = {**SAFE, "Content-Security-Policy": csp} if csp else {
        k: v for k, v in SAFE.items() if k != "Content-Security-Policy"}
    result = await judge(str((await serve(aiohttp_server, headers)).make_url("")).rstrip("/"))
    assert rules_of(result) == expected, result.findings


@pytest.mark.parametrize(
    "csp",
    [
        STRICT_CSP,
        "default-src 'none'; frame-ancestors 'none'",
        # A nonce switches 'unsafe-inline' off (the CSP3 fallback for old browsers).
        ("script-src 'nonce-r4nd0m' 'unsafe-inline' 'strict-dynamic'; object-src 'none'; "
        "frame-ancestors 'self'"),
        # Two policies: the second forbids what the first allows, and browsers enforce both.
        "script-src * 'unsafe-inline', default-src 'self'; frame-ancestors 'none'",
    ],
)
async def test_good_csp_is_clean(aiohttp_server: AiohttpServer, csp: str) -> None:
    server = await serve(aiohttp_server, {**SAFE, "Content-Security-Policy": csp})
    result = await judge(str(server.make_url("")).rstrip("/"))
    assert result.findings == [], result.findings


async def test_frame_ancestors_star_is_no_framing_protection(aiohttp_server: AiohttpServer) -> None:
    headers = {k: v for k, v in SAFE.items() if k != "X-Frame-Options"}
    headers["Content-Security-Policy"] = "default-src 'self'; frame-ancestors *"
    result = await judge(str((await serve(aiohttp_server, headers)).make_url("")).rstrip("/"))
    assert rules_of(result) == {"framing_unprotected": "warning"}, result.findings
    assert "frame-ancestors allows any site" in result.findings[0].message
    # X-Frame-Options: DENY still protects.
    headers["X-Frame-Options"] = "DENY"
    result = await judge(str((await serve(aiohttp_server, headers)).make_url("")).rstrip("/"))
    assert result.findings == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Referrer-Policy": "unsafe-url"}, {"referrer_policy_unsafe": "warning"}),
        ({"Referrer-Policy": "no-referrer-when-downgrade"}, {"referrer_policy_unsafe": "warning"}),
        ({"Referrer-Policy": "origin"}, {"referrer_policy_unsafe": "info"}),
        # The last recognised token wins: browsers fall back to an older token they know.
        ({"Referrer-Policy": "unsafe-url, strict-origin-when-cross-origin"}, {}),
        ({"Referrer-Policy": "sometimes"}, {"referrer_policy_invalid": "info"}),
        ({"Cross-Origin-Opener-Policy": "unsafe-none"}, {"coop_missing": "info"}),
        ({"Cross-Origin-Opener-Policy": ""}, {"coop_missing": "info"}),
        ({"Cross-Origin-Resource-Policy": "same-orgin"}, {"corp_invalid": "warning"}),
    ],
)
async def test_referrer_coop_corp(
    aiohttp_server: AiohttpServer, headers: dict[str, str], expected: dict[str, str]
) -> None:
    merged = {k: v for k, v in {**SAFE, **headers}.items() if v}
    result = await judge(str((await serve(aiohttp_server, merged)).make_url("")).rstrip("/"))
    assert rules_of(result) == expected, result.findings


async def test_corp_missing_is_info(aiohttp_server: AiohttpServer) -> None:
    headers = {k: v for k, v in SAFE.items() if k != "Cross-Origin-Resource-Policy"}
    result = await judge(str((await serve(aiohttp_server, headers)).make_url("")).rstrip("/"))
    assert rules_of(result) == {"corp_missing": "info"}


def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    cert, key = make_cert(tmp_path, days=365)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


async def test_https_short_hsts_and_session_cookie_are_warnings(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    ctx, cert = tls_context(tmp_path)
    server = await serve(
        aiohttp_server,
        {**SAFE, "Strict-Transport-Security": "max-age=86400"},
        cookies=["sessionid=abc; Path=/; SameSite=Lax"],
        ssl_ctx=ctx,
    )
    result = await judge(f"https://127.0.0.1:{server.port}", tls_ca_file=str(cert))
    assert rules_of(result) == {
        "hsts_short": "warning",
        "cookie_not_secure": "warning",
        "cookie_not_httponly": "warning",
    }, result.findings


async def test_http_must_redirect_to_https(
    aiohttp_server: AiohttpServer, tmp_path: Path, servers: Servers
) -> None:
    """With https configured, the plain-HTTP address must redirect to https on the same host."""
    ctx, cert = tls_context(tmp_path)
    hsts = {**SAFE, "Strict-Transport-Security": "max-age=31536000"}
    https = await serve(aiohttp_server, hsts, ssl_ctx=ctx)
    https_url = f"https://127.0.0.1:{https.port}"

    async def no_redirect(_: web.Request) -> web.Response:
        return web.Response(text="plain")

    async def to_https(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently(https_url + "/")

    async def off_host(_: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("https://www.example.com/")

    found = {}
    for name, handler in {"none": no_redirect, "https": to_https, "off": off_host}.items():
        app = web.Application()
        app.router.add_get("/", handler)
        plain = await aiohttp_server(app)
        result = await judge(https_url, tls_ca_file=str(cert), http_url=f"http://127.0.0.1:{plain.port}")
        found[name] = (rules_of(result), observatory(result))
    assert found["none"][0] == {"https_redirect_missing": "warning"}
    assert found["https"][0] == {}
    assert found["off"][0] == {"https_redirect_off_host": "info"}
    # The Observatory: redirection-to-https 0, so 100 plus the bonuses (csp +5, frame-ancestors
    # +5, corp +10); off-host -5 leaves 95, still at least 90, so the bonuses count; a missing
    # redirect (-20) leaves 80, under 90, and the bonuses are withheld.
    assert found["https"][1] == (120.0, "A+")
    assert found["off"][1] == (115.0, "A+")
    assert found["none"][1] == (80.0, "B+")


# (headers, cookies, https, the score from the Observatory's modifiers, its grade)
SCORED: list[tuple[str, dict[str, str], list[str], bool, int, str]] = [
    # csp +5 (no unsafe), xfo via frame-ancestors +5, corp same-origin +10; hsts 0.
    ("strict", {**SAFE, "Strict-Transport-Security": "max-age=31536000"}, [], True, 120, "A+"),
    # csp default-src 'none' +10, referrer private +5, cookies secure+httponly+samesite +5,
    # corp +10, xfo via csp +5.
    (
        "api",
        {**SAFE, "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
         "Referrer-Policy": "no-referrer", "Strict-Transport-Security": "max-age=63072000"},
        ["session=x; Secure; HttpOnly; SameSite=Strict"],
        True,
        135,
        "A+",
    ),
    # csp unsafe-inline -20, referrer unsafe -5, hsts < six months -10, xfo DENY 0 (no
    # frame-ancestors), corp missing 0: 65, under 90, so no bonus.
    (
        "inline",
        {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
         "Content-Security-Policy": "script-src 'self' 'unsafe-inline'; object-src 'none'",
         "Referrer-Policy": "unsafe-url", "Strict-Transport-Security": "max-age=86400"},
        [],
        True,
        65,
        "B-",
    ),
    # session cookie without Secure (no HSTS) -40 and without HttpOnly -30 counts once (the
    # worst, -40); hsts missing -20; csp missing -25; xfo missing -20; nosniff missing -5.
    ("bare-https", {}, ["sessionid=x; Path=/"], True, 0, "F"),
    # plain http: csp -25, redirection missing -20, hsts not on https -20, xfo -20, xcto -5.
    ("bare-http", {}, [], False, 10, "F"),
]


@pytest.mark.parametrize(("name", "headers", "cookies", "https", "score", "grade"), SCORED,
                         ids=[s[0] for s in SCORED])
async def test_observatory_scores(
    aiohttp_server: AiohttpServer, tmp_path: Path, name: str, headers: dict[str, str],
    cookies: list[str], https: bool, score: int, grade: str,
) -> None:
    ctx, cert = tls_context(tmp_path) if https else (None, None)
    server = await serve(aiohttp_server, {"Server": "test", **headers}, cookies=cookies,
                         ssl_ctx=ctx)
    base = f"{'https' if https else 'http'}://127.0.0.1:{server.port}"
    extra = {"tls_ca_file": str(cert)} if cert else {}
    result = await judge(base, **extra)
    assert observatory(result) == (float(score), grade), (name, result.findings)


def test_grades_follow_the_observatory_chart() -> None:
    chart = {100: "A+", 95: "A", 90: "A", 85: "A-", 80: "B+", 75: "B", 70: "B", 65: "B-",
             60: "C+", 55: "C", 50: "C", 45: "C-", 40: "D+", 35: "D", 30: "D", 25: "D-",
             20: "F", 15: "F", 10: "F", 5: "F", 0: "F"}
    for floor, grade in chart.items():
        assert grade_for(floor) == grade and grade_for(floor + 4) == (grade if floor < 100
                                                                      else "A+")
    assert grade_for(135) == "A+" and grade_for(-20) == "F"


async def test_https_csp_http_sources_invalid_hsts_and_samesite_none(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    ctx, cert = tls_context(tmp_path)
    headers = {
        **SAFE,
        "Content-Security-Policy": STRICT_CSP + "; img-src http://img.example.com",
        "Strict-Transport-Security": "includeSubDomains",
    }
    server = await serve(aiohttp_server, headers,
                         cookies=["prefs=1; SameSite=None; HttpOnly"], ssl_ctx=ctx)
    result = await judge(f"https://127.0.0.1:{server.port}", tls_ca_file=str(cert))
    assert rules_of(result) == {
        "csp_insecure_source": "info",  # images only: passive content
        "hsts_invalid": "warning",
        "cookie_not_secure": "warning",
        "cookie_samesite_none_insecure": "warning",
    }, result.findings

    headers["Content-Security-Policy"] = STRICT_CSP.replace("'self'", "'self' http://cdn.example.com")
    headers["Strict-Transport-Security"] = "max-age=31536000"
    server = await serve(aiohttp_server, headers, ssl_ctx=ctx)
    result = await judge(f"https://127.0.0.1:{server.port}", tls_ca_file=str(cert))
    assert rules_of(result) == {"csp_insecure_source": "warning"}, result.findings
    # The Observatory: csp-implemented-with-insecure-scheme, -20: 80, so no bonuses.
    assert observatory(result) == (80.0, "B+")


async def test_report_only_csp_enforces_nothing(aiohttp_server: AiohttpServer) -> None:
    headers = {k: v for k, v in SAFE.items() if k != "Content-Security-Policy"}
    headers["Content-Security-Policy-Report-Only"] = STRICT_CSP
    result = await judge(str((await serve(aiohttp_server, headers)).make_url("")).rstrip("/"))
    assert rules_of(result) == {"csp_missing": "warning"}, result.findings
    assert "Report-Only" in next(f for f in result.findings if f.rule == "csp_missing").message
