"""The console over plain HTTP: sign-in, sessions, CSRF, secrets, and Vigil's own exporter
checks (security headers, cookies, CORS) run against it."""

from __future__ import annotations

import re
import ssl
from typing import Any

from vigil.exporter.config import TargetConfig
from vigil.exporter.cors import CorsCheck
from vigil.exporter.security import SecurityCheck
from vigil.remediator.keys import STORE

from tests.remediator.conftest import (
    ADMIN_TOKEN,
    WEBHOOK_AUTH,
    WEBHOOK_TOKEN,
    alert,
    notification,
    post,
    procedure,
    wait_until,
)


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


async def sign_in(client: Any, token: str = ADMIN_TOKEN) -> Any:
    form = await client.get("/console/login")
    assert form.status == 200
    return await client.post("/console/login", data={"csrf": _csrf(await form.text()),
                                                     "token": token}, allow_redirects=False)


async def test_sign_in_sets_a_strict_session_cookie_and_the_webhook_token_cannot(
        make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")]))
    page = await client.get("/console", allow_redirects=False)
    assert page.status == 303 and page.headers["Location"] == "/console/login"

    refused = await sign_in(client, WEBHOOK_TOKEN)
    assert refused.status == 401
    assert "invalid credentials" in await refused.text()
    assert "vigil_console" not in {c.key for c in client.session.cookie_jar}

    ok = await sign_in(client)
    assert ok.status == 303 and ok.headers["Location"] == "/console"
    cookie = next(v for k, v in ok.headers.items() if k == "Set-Cookie" and "vigil_console=" in v)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; under TLS the cookie is Secure
    index = await client.get("/console")
    html = await index.text()
    assert index.status == 200 and "admin:token" in html
    for secret in (ADMIN_TOKEN, WEBHOOK_TOKEN):
        assert secret not in html
    audit = await client.get("/console/audit")
    assert "console.signin" in await audit.text()


async def test_actions_need_a_session_and_its_csrf_token(make_config: Any,
                                                         start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")]))
    engine = client.server.app[STORE]
    assert (await client.post("/console/control/pause", data={"csrf": "x"})).status == 403
    assert (await sign_in(client)).status == 303
    forged = await client.post("/console/control/pause", data={"csrf": "forged"})
    assert forged.status == 403 and "CSRF" in await forged.text()
    missing = await client.post("/console/control/pause")
    assert missing.status == 403
    cross = await client.post("/console/control/pause", headers={"Origin": "https://evil.example"},
                              data={"csrf": _csrf(await (await client.get("/console")).text())})
    assert cross.status == 403
    assert engine.paused() is None  # nothing changed

    csrf = _csrf(await (await client.get("/console")).text())
    done = await client.post("/console/control/pause", data={"csrf": csrf, "procedure": "fix"},
                             allow_redirects=False)
    assert done.status == 303
    assert engine.paused_procedures() == {"fix"}
    audit = engine.audit_log()
    assert audit[0]["action"] == "control.pause" and audit[0]["actor"] == "admin:token"
    assert audit[0]["detail"] == {"procedure": "fix"}


async def test_approve_and_deny_from_the_console(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix", requires_approval=True)]))
    resp = await post(client, notification(alert("fixAlert", "f1"), alert("fixAlert", "f2")),
                      WEBHOOK_AUTH)
    assert resp.status == 200
    store = client.server.app[STORE]

    async def waiting() -> Any:
        rows = store.list_incidents(state="awaiting_approval")
        return rows if len(rows) == 2 else None

    first, second = await wait_until(waiting, what="two incidents awaiting approval")
    await sign_in(client)
    page = await client.get(f"/console/incidents/{first['id']}")
    html = await page.text()
    assert 'id="approve"' in html and 'id="deny"' in html
    csrf = _csrf(html)
    assert (await client.post(f"/console/incidents/{first['id']}/approve",
                              data={"csrf": csrf}, allow_redirects=False)).status == 303
    assert (await client.post(f"/console/incidents/{second['id']}/deny",
                              data={"csrf": csrf}, allow_redirects=False)).status == 303
    again = await client.post(f"/console/incidents/{second['id']}/deny", data={"csrf": csrf})
    assert again.status == 409 and "not awaiting_approval" in await again.text()

    async def resolved() -> Any:
        return store.incident(first["id"])["state"] == "resolved" or None

    await wait_until(resolved, what="the approved procedure to run")
    denied = store.incident(second["id"])
    assert denied["state"] == "escalated" and denied["reason"] == "denied by admin:token"
    actions = {(r["action"], r["incident_id"], r["actor"]) for r in store.audit_log()}
    assert ("incident.approve", first["id"], "admin:token") in actions
    assert ("incident.deny", second["id"], "admin:token") in actions


async def test_simulate_a_pasted_payload(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")]))
    await sign_in(client)
    csrf = _csrf(await (await client.get("/console/simulate")).text())
    import json

    resp = await client.post("/console/simulate", data={
        "csrf": csrf, "payload": json.dumps(notification(alert("fixAlert", "5a1")))})
    html = await resp.text()
    assert resp.status == 200, re.findall(r'class="error"[^<]*', html)
    assert "fixAlert" in html and "Procedure fix" in html
    bad = await client.post("/console/simulate", data={"csrf": csrf, "payload": "{nope"})
    assert bad.status == 400 and "invalid JSON: line 1 column 2" in await bad.text()
    assert client.server.app[STORE].list_incidents() == []  # nothing stored


async def test_vigil_exporter_checks_pass_against_the_console(
        make_config: Any, start_console: Any, tls_context: Any) -> None:
    """Under TLS, as a console is deployed: the session cookies are Secure, HSTS is sent."""
    ctx, ca_file = tls_context
    client = await start_console(make_config([procedure("fix")]), ctx)
    base = str(client.make_url("")).rstrip("/")
    assert base.startswith("https://127.0.0.1:")
    target = TargetConfig.model_validate({
        "name": "console", "base_url": base, "tls_ca_file": str(ca_file),
        "security": {"paths": ["/console/login", "/console", "/console/static/console.js",
                               "/console/no-such-page"]},
        "cors": {"path": "/console/login", "origins": [base], "methods": ["GET", "POST"],
                 "required_methods": [], "credentials": True,
                 "disallowed_origins": ["https://evil.example"]}})
    assert target.security is not None and target.cors is not None
    checks = [SecurityCheck(target, target.security), CorsCheck(target, target.cors)]
    try:
        security, cors = [await check(10) for check in checks]
    finally:
        for check in checks:
            await check.aclose()
    assert security.success and security.findings == [], security.findings
    # the CORS check needs one origin that must be allowed; the console allows none (it has no
    # cross-origin front-end), so its own origin's preflight is the one expected refusal, and
    # nothing else: no foreign, null, look-alike or listed origin is accepted
    assert cors.success
    assert [(f.rule, f.subject) for f in cors.findings] == [("origin_refused", base)], cors.findings
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    resp = await client.get("/console/login", ssl=client_ctx)
    assert "Secure" in resp.headers["Set-Cookie"] and "HttpOnly" in resp.headers["Set-Cookie"]
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    for name, value in (("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                        ("Cross-Origin-Opener-Policy", "same-origin"),
                        ("Cross-Origin-Resource-Policy", "same-origin")):
        assert resp.headers[name] == value
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "<script>" not in await resp.text()
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_console_is_disabled_without_admin_credentials(make_config: Any,
                                                             start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix")], admin={}))
    for resp in (await client.get("/console/login"),
                 await client.post("/console/login", data={"csrf": "x", "token": WEBHOOK_TOKEN})):
        assert resp.status == 403 and "disabled" in await resp.text()
    assert "vigil_console" not in {c.key for c in client.session.cookie_jar}
