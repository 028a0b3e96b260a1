"""What an administrator can do, shared by the JSON admin API and the incident console.

Each function takes the running app and the authenticated actor (`admin:<principal>`), acts
through the store and the engine, and lands in the audit log with that actor.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from vigil.remediator.keys import STORE
from vigil.remediator.store import utcnow

__all__ = ["MAX_ID", "ActionRefused", "approve", "audit", "control_state", "db", "deny",
           "incident_details", "incident_id", "set_paused"]


class ActionRefused(Exception):
    """The action does not apply (unknown incident, wrong state): status and one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def audit(app: web.Application, who: str, action: str, detail: dict[str, Any]) -> None:
    """An audit entry not tied to an incident (console sign-in, dry runs)."""
    await db(app[STORE].audit, who, action, None, detail)


MAX_ID = 2**63 - 1  # bigint


def incident_id(request: web.Request) -> int:
    """The {id} of the path as an incident id; 404 when it cannot be one."""
    try:
        value = int(request.match_info["id"])
    except ValueError:
        raise web.HTTPNotFound() from None
    if not 0 < value <= MAX_ID:
        raise web.HTTPNotFound()
    return value


def _runtime(app: web.Application) -> Any:
    from vigil.remediator.app import RUNTIME  # the app module imports this one

    return app[RUNTIME]


async def incident_details(app: web.Application, incident_id: int) -> dict[str, Any] | None:
    """The incident, its alert, attempts, timeline and intelligence (group, root cause,
    similar incidents, recommendation, impact); None when there is no such incident."""
    data = await db(app[STORE].timeline, incident_id)
    if data is None:
        return None
    events: list[dict[str, Any]] = []
    for a in data["audit"]:
        events.append({"at": a["at"], "event": a["action"], "actor": a["actor"], "detail": a["detail"]})
    for att in data["attempts"]:
        events.append({"at": att["created_at"], "event": f"attempt.{att['state']}",
                       "actor": att["replica"], "detail": {"attempt": att["id"], "reason": att["reason"]}})
        if att["finished_at"]:
            events.append({"at": att["finished_at"], "event": "attempt.finished", "actor": att["replica"],
                           "detail": {"attempt": att["id"], "state": att["state"],
                                      "verification": att["verification"]}})
    events.sort(key=lambda e: e["at"])
    data["timeline"] = events
    del data["audit"]
    engine = _runtime(app).engine
    if engine is not None and engine.intel is not None:
        data.update(await engine.intel.details(data["incident"]["id"]))
    return data


async def _decide(app: web.Application, incident_id: int, who: str, via: str, action: str,
                  to_state: str, **columns: Any) -> dict[str, Any]:
    """Move an incident out of awaiting_approval (approve or deny) and audit who did it."""
    store = app[STORE]
    inc = await db(store.incident, incident_id)
    if inc is None:
        raise ActionRefused(404, "no such incident")
    verb = "approved" if action == "incident.approve" else "denied"
    if not await db(store.transition, incident_id, ("awaiting_approval",), to_state,
                    reason=f"{verb} by {who}", actor=who, **columns):
        raise ActionRefused(409, f"incident is {inc['state']}, not awaiting_approval")
    await db(store.audit, who, action, incident_id, {"via": via})
    result: dict[str, Any] = await db(store.incident, incident_id)
    return result


async def approve(app: web.Application, incident_id: int, who: str, via: str) -> dict[str, Any]:
    """Let an incident awaiting approval run; the engine takes it at once."""
    result = await _decide(app, incident_id, who, via, "incident.approve", "open",
                           approved_at=utcnow(), approved_by=who)
    runtime = _runtime(app)
    assert runtime.engine is not None
    runtime.spawn(runtime.engine.consider(incident_id))
    return result


async def deny(app: web.Application, incident_id: int, who: str, via: str) -> dict[str, Any]:
    """Refuse an incident's procedure: nothing runs, and it escalates to a human."""
    result = await _decide(app, incident_id, who, via, "incident.deny", "escalated")
    runtime = _runtime(app)
    assert runtime.engine is not None
    runtime.spawn(runtime.engine.escalate(incident_id, f"denied by {who}"))
    return result


async def set_paused(app: web.Application, paused: bool, who: str,
                     procedure: str | None = None) -> None:
    """The kill switch, for everything or for one configured procedure."""
    engine = _runtime(app).engine
    assert engine is not None
    if procedure is not None and procedure not in engine.procs:
        raise ActionRefused(404, "no such procedure")
    await db(app[STORE].set_paused, paused, who, procedure)
    if procedure is None:
        engine.paused = paused
    elif paused:
        engine.paused_procedures.add(procedure)
    else:
        engine.paused_procedures.discard(procedure)
    if not paused:
        _runtime(app).spawn(engine.sweep())


def control_state(app: web.Application) -> dict[str, Any]:
    engine = _runtime(app).engine
    assert engine is not None
    return {"paused": engine.paused, "paused_procedures": sorted(engine.paused_procedures),
            "procedures": sorted(engine.procs), "in_progress": len(engine.running)}
