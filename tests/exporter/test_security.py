"""The security check: headers, cookies and disclosure against the demo target; HSTS and the
TLS certificate against a real HTTPS server with a short-lived self-signed certificate."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpServer
from vigil.demo.client import DemoTarget
from vigil.exporter.config import parse_config

from tests.exporter.helpers import arun_checks, demo_config, restore_target, run_checks
from tests.harness import require_binary

CASES: list[tuple[dict[str, Any], set[tuple[str, str]]]] = [
    ({"security_headers": {"X-Content-Type-Options": ""}}, {("nosniff_missing", "/api/v1/items")}),
    (
        {"security_headers": {"X-Frame-Options": "", "Content-Security-Policy": ""}},
        {("framing_unprotected", "/api/v1/items")},
    ),
    ({"server_header": "demo/1.2.3 Python/3.11"}, {("version_disclosed", "Server")}),
    (
        {"session_cookie": {"secure": False, "http_only": False, "same_site": ""}},
        {
            ("cookie_not_secure", "session"),
            ("cookie_not_httponly", "session"),
            ("cookie_samesite_missing", "session"),
        },
    ),
]


def test_security_misconfigurations_on_the_demo_target(
    demo_target: DemoTarget, tmp_path: Path
) -> None:
    config = demo_config(demo_target, tmp_path, only=("security",))
    clean = run_checks(config)["security"]
    assert clean.success and clean.findings == [], clean.findings
    for patch, expected in CASES:
        demo_target.inject(config_patch=patch)
        found = {(f.rule, f.subject) for f in run_checks(config)["security"].findings}
        assert expected <= found, (patch, found)
        restore_target(demo_target)
        assert run_checks(config)["security"].findings == [], patch


def make_cert(directory: Path, days: int) -> tuple[Path, Path]:
    openssl = require_binary("openssl")
    cert, key = directory / f"cert{days}.pem", directory / f"key{days}.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(days),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


async def https_server(
    aiohttp_server: AiohttpServer, cert: Path, key: Path, headers: dict[str, str]
) -> str:
    async def page(_: web.Request) -> web.Response:
        return web.Response(text="ok", headers=headers)

    app = web.Application()
    app.router.add_get("/", page)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    server = await aiohttp_server(app, ssl=ctx)
    return f"https://127.0.0.1:{server.port}"


# aiohttp announces "Python/3.x aiohttp/3.y" by default; the check rightly reports that.
SAFE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Server": "test",
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; frame-ancestors 'none'",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


async def test_tls_expiry_and_hsts(aiohttp_server: AiohttpServer, tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path, days=3)
    url = await https_server(aiohttp_server, cert, key, SAFE)
    config = parse_config(
        {"targets": [{"name": "tls", "base_url": url, "tls_ca_file": str(cert), "security": {}}]}
    )
    result = (await arun_checks(config))["security"]
    assert result.success, result.error
    found = {(f.rule, f.severity.value) for f in result.findings}
    assert found == {("hsts_missing", "warning"), ("tls_expiring", "critical")}, found
    [(labels, remaining)] = result.samples["vigil_tls_cert_remaining_seconds"]
    assert labels == {"target": "tls", "host": url.removeprefix("https://")}
    assert 2 * 86400 < remaining <= 3 * 86400

    # Same certificate, thresholds lowered: only a warning. No CA given: it does not verify.
    config = parse_config(
        {
            "targets": [
                {
                    "name": "tls",
                    "base_url": url,
                    "security": {"tls_critical_days": 1, "tls_warning_days": 30},
                }
            ]
        }
    )
    result = (await arun_checks(config))["security"]
    found = {(f.rule, f.severity.value) for f in result.findings}
    assert ("tls_expiring", "warning") in found and ("tls_invalid", "critical") in found, found
    assert result.samples["vigil_tls_cert_remaining_seconds"][0][1] > 2 * 86400


async def test_long_lived_cert_with_hsts_is_clean(
    aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    cert, key = make_cert(tmp_path, days=365)
    url = await https_server(
        aiohttp_server,
        cert,
        key,
        {**SAFE, "Strict-Transport-Security": "max-age=31536000; includeSubDomains"},
    )
    config = parse_config(
        {"targets": [{"name": "tls", "base_url": url, "tls_ca_file": str(cert), "security": {}}]}
    )
    result = (await arun_checks(config))["security"]
    assert result.success and result.findings == [], result.findings
