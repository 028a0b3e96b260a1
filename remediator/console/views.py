"""The console's routes: sign-in, incidents, an incident's timeline, audit log, dry run, actions.

Pages are rendered on the server (Jinja2, autoescaped); a small static script refreshes the
live parts. Every POST needs a session and its CSRF token, and a cross-origin Origin is
refused; every action goes through vigil.remediator.admin, so it lands in the audit log with
the signed-in administrator.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web
from vigil.remediator import admin
from vigil.remediator.auth import Credentials
from vigil.remediator.console.sessions import COOKIE, LOGIN_COOKIE, Session, Sessions
from vigil.remediator.keys import CONFIG, STORE
from vigil.remediator.payload import PayloadError

from vigil.paths import package_dir

__all__ = ["SECURITY_HEADERS", "setup_console"]

log = logging.getLogger("vigil.remediator.console")

PREFIX = "/console"
SESSIONS: web.AppKey[Sessions] = web.AppKey("console_sessions", Sessions)
CREDS: web.AppKey[Credentials] = web.AppKey("console_creds", Credentials)
TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates", jinja2.Environment)
MAX_PAYLOAD = 256 * 1024

# scripts and styles come only from the console's own static files: no inline code at all
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000; includeSubDomains"


def _https(request: web.Request) -> bool:
    return request.secure


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(PREFIX):
        return
    response.headers.update(SECURITY_HEADERS)
    response.headers["Server"] = "vigil-remediator"  # no framework or version
    if _https(request):
        response.headers["Strict-Transport-Security"] = HSTS


def _set_cookie(request: web.Request, response: web.StreamResponse, name: str, value: str,
                max_age: int | None = None) -> None:
    response.set_cookie(name, value, path=PREFIX, httponly=True, samesite="Strict",
                        secure=_https(request), max_age=max_age)


def _render(request: web.Request, template: str, status: int = 200, **context: Any
            ) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(prefix=PREFIX, **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def _page(request: web.Request, session: Session, template: str, status: int = 200,
          **context: Any) -> web.Response:
    return _render(request, template, status, principal=session.principal, csrf=session.csrf,
                   **context)


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    return _render(request, "error.html", status, message=message)


def _session(request: web.Request) -> Session | None:
    return request.app[SESSIONS].get(request.cookies.get(COOKIE))


def _same_origin(request: web.Request) -> bool:
    """Browsers say where a POST comes from: Sec-Fetch-Site, else Origin. (Under
    Referrer-Policy: no-referrer a form's Origin is "null", so Sec-Fetch-Site decides.)"""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser; the CSRF token still has to match
    return origin != "null" and urlsplit(origin).netloc == request.host


def _who(session: Session) -> str:
    return f"admin:{session.principal}"


def page(handler: Any) -> Any:
    """GET pages: a session or the sign-in page."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        if session is None:
            raise web.HTTPSeeOther(f"{PREFIX}/login")
        response: web.StreamResponse = await handler(request, session)
        return response

    return wrapped


def action(handler: Any) -> Any:
    """POST actions: a session, its CSRF token and a same-origin request, or 403."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = _session(request)
        if session is None:
            return _refuse(request, 403, "sign in first")
        if not _same_origin(request):
            return _refuse(request, 403, "cross-origin request refused")
        form = await request.post()
        token = form.get("csrf")
        if not session.csrf_ok(token if isinstance(token, str) else None):
            log.warning("console: refused an action with a missing or wrong CSRF token")
            return _refuse(request, 403, "invalid or missing CSRF token: reload the page")
        try:
            response: web.StreamResponse = await handler(request, session, form)
        except admin.ActionRefused as exc:
            return _refuse(request, exc.status, str(exc))
        return response

    return wrapped


# --- sign-in -------------------------------------------------------------------------------------

async def login_form(request: web.Request, *, status: int = 200, message: str = "") -> web.Response:
    creds = request.app[CREDS]
    if not creds.configured:
        return _refuse(request, 403, "the console is disabled: configure admin.bearer_token_file "
                                     "or admin.basic_auth")
    if _session(request) is not None and not message:
        raise web.HTTPSeeOther(PREFIX)
    nonce = secrets.token_urlsafe(32)
    response = _render(request, "login.html", status, login_csrf=nonce, message=message,
                       token=creds.token is not None, basic=creds.username is not None)
    _set_cookie(request, response, LOGIN_COOKIE, nonce)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    creds = request.app[CREDS]
    if not creds.configured:
        return _refuse(request, 403, "the console is disabled")
    if not _same_origin(request):
        return _refuse(request, 403, "cross-origin request refused")
    form = await request.post()
    nonce, sent = request.cookies.get(LOGIN_COOKIE), form.get("csrf")
    if not nonce or not isinstance(sent, str) or not secrets.compare_digest(nonce, sent):
        return await login_form(request, status=403,
                                message="the sign-in form expired: try again")
    token, user, password = (str(form.get(k, "")) for k in ("token", "username", "password"))
    principal = (creds.check_token(token.strip()) if token
                 else creds.check_password(user, password) if user else None)
    if principal is None:
        log.warning("console: failed sign-in from %s", request.remote)
        return await login_form(request, status=401, message="invalid credentials")
    sid, session = request.app[SESSIONS].create(principal)
    await admin.audit(request.app, _who(session), "console.signin", {"remote": request.remote})
    response = web.HTTPSeeOther(PREFIX)
    _set_cookie(request, response, COOKIE, sid)
    response.del_cookie(LOGIN_COOKIE, path=PREFIX)
    raise response


@action
async def logout(request: web.Request, session: Session, _: Any) -> web.StreamResponse:
    request.app[SESSIONS].drop(request.cookies.get(COOKIE))
    response = web.HTTPSeeOther(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    raise response


# --- pages ---------------------------------------------------------------------------------------

async def _incidents(request: web.Request) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await admin.db(request.app[STORE].list_incidents, limit=100)
    return rows


@page
async def index(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "index.html", incidents=await _incidents(request),
                 control=admin.control_state(request.app), dry_run=request.app[CONFIG].dry_run)


@page
async def incidents_fragment(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "_incidents.html", incidents=await _incidents(request))


@page
async def control_fragment(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "_control.html", control=admin.control_state(request.app))


_incident_id = admin.incident_id


async def _details(request: web.Request) -> dict[str, Any]:
    data = await admin.incident_details(request.app, _incident_id(request))
    if data is None:
        raise web.HTTPNotFound(text="no such incident")
    return data


def _when(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


@page
async def incident(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "incident.html", d=await _details(request))


@page
async def incident_fragment(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "_incident.html", d=await _details(request))


@page
async def audit(request: web.Request, session: Session) -> web.Response:
    rows = await admin.db(request.app[STORE].audit_log, 300)
    return _page(request, session, "audit.html", rows=rows)


@page
async def simulate_form(request: web.Request, session: Session) -> web.Response:
    return _page(request, session, "simulate.html", payload="", result=None, message="")


# --- actions -------------------------------------------------------------------------------------

@action
async def approve(request: web.Request, session: Session, _: Any) -> web.StreamResponse:
    incident_id = _incident_id(request)
    await admin.approve(request.app, incident_id, _who(session), "console")
    raise web.HTTPSeeOther(f"{PREFIX}/incidents/{incident_id}")


@action
async def deny(request: web.Request, session: Session, _: Any) -> web.StreamResponse:
    incident_id = _incident_id(request)
    await admin.deny(request.app, incident_id, _who(session), "console")
    raise web.HTTPSeeOther(f"{PREFIX}/incidents/{incident_id}")


def _control(paused: bool) -> Any:
    @action
    async def handler(request: web.Request, session: Session, form: Any) -> web.StreamResponse:
        procedure = form.get("procedure") or None
        if procedure is not None and not isinstance(procedure, str):
            return _refuse(request, 400, "procedure: expected a name")
        await admin.set_paused(request.app, paused, _who(session), procedure)
        raise web.HTTPSeeOther(PREFIX)

    return handler


@action
async def simulate(request: web.Request, session: Session, form: Any) -> web.StreamResponse:
    from vigil.remediator.cli import simulate_config

    text = form.get("payload")
    if not isinstance(text, str) or not text.strip():
        return _page(request, session, "simulate.html", 400, payload="", result=None,
                     message="paste an Alertmanager webhook payload (JSON)")
    if len(text) > MAX_PAYLOAD:
        return _page(request, session, "simulate.html", 413, payload="", result=None,
                     message=f"payload larger than {MAX_PAYLOAD} bytes")
    try:
        result = simulate_config(request.app[CONFIG], json.loads(text))
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}"
    except (PayloadError, RecursionError) as exc:
        message = str(exc) if isinstance(exc, PayloadError) else "invalid JSON: nested too deeply"
    else:
        await admin.audit(request.app, _who(session), "console.simulate",
                          {"alerts": len(result)})
        return _page(request, session, "simulate.html", payload=text, result=result, message="")
    return _page(request, session, "simulate.html", 400, payload=text, result=None, message=message)


async def not_found(request: web.Request) -> web.Response:
    return _refuse(request, 404, "no such page")


def setup_console(app: web.Application, admin_creds: Credentials) -> None:
    """Add /console to the remediator's app. Only the admin credentials can sign in."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(package_dir("vigil.remediator.console")
                                                            / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["as_json"] = _as_json
    env.filters["when"] = _when
    app[TEMPLATES] = env
    app[SESSIONS] = Sessions()
    app[CREDS] = admin_creds
    app.on_response_prepare.append(_headers)
    r = app.router
    r.add_get(PREFIX, index)
    r.add_get(f"{PREFIX}/login", login_form)
    r.add_post(f"{PREFIX}/login", login)
    r.add_post(f"{PREFIX}/logout", logout)
    r.add_get(f"{PREFIX}/fragments/incidents", incidents_fragment)
    r.add_get(f"{PREFIX}/fragments/control", control_fragment)
    r.add_get(f"{PREFIX}/incidents/{{id}}", incident)
    r.add_get(f"{PREFIX}/fragments/incidents/{{id}}", incident_fragment)
    r.add_post(f"{PREFIX}/incidents/{{id}}/approve", approve)
    r.add_post(f"{PREFIX}/incidents/{{id}}/deny", deny)
    r.add_post(f"{PREFIX}/control/pause", _control(True))
    r.add_post(f"{PREFIX}/control/resume", _control(False))
    r.add_get(f"{PREFIX}/audit", audit)
    r.add_get(f"{PREFIX}/simulate", simulate_form)
    r.add_post(f"{PREFIX}/simulate", simulate)
    r.add_static(f"{PREFIX}/static", package_dir("vigil.remediator.console") / "static",
                 append_version=True)
    r.add_get(f"{PREFIX}/{{tail:.*}}", not_found)
