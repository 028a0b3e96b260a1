"""Admin actions beyond approve: deny, and the kill switch of one procedure."""

from __future__ import annotations

from typing import Any

from tests.remediator.conftest import (
    ADMIN_AUTH,
    alert,
    incident_state,
    notification,
    post,
    procedure,
    store_of,
    wait_until,
)


async def test_one_paused_procedure_holds_its_incidents_while_others_run(
        make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("held"), procedure("free")]))
    resp = await client.post("/api/v1/control/procedures/held/pause", headers=ADMIN_AUTH)
    assert resp.status == 200 and (await resp.json())["paused"] is True
    unknown = await client.post("/api/v1/control/procedures/nope/pause", headers=ADMIN_AUTH)
    assert unknown.status == 404
    control = await (await client.get("/api/v1/control", headers=ADMIN_AUTH)).json()
    assert control["paused"] is False and control["paused_procedures"] == ["held"]

    assert (await post(client, notification(alert("heldAlert", "a1"), alert("freeAlert", "b2")))
            ).status == 200
    store = store_of(client)

    def by_name() -> dict[str, Any]:
        return {i["alertname"]: i for i in store.list_incidents()}

    await wait_until(lambda: by_name().get("freeAlert", {}).get("state") == "resolved",
                     what="the free procedure to run")
    held = await wait_until(lambda: (i := by_name().get("heldAlert")) and "paused" in i["reason"]
                            and i, what="the held incident to be skipped as paused")
    assert held["state"] == "open" and held["reason"] == "skipped: procedure held is paused (kill switch)"

    assert (await client.post("/api/v1/control/procedures/held/resume", headers=ADMIN_AUTH)
            ).status == 200
    await wait_until(lambda: store.incident(held["id"])["state"] == "resolved",
                     what="the resumed procedure to run")
    audit = [(r["action"], r["detail"]) for r in store.audit_log() if r["action"].startswith("control")]
    assert ("control.pause", {"procedure": "held"}) in audit
    assert ("control.resume", {"procedure": "held"}) in audit


async def test_deny_escalates_and_runs_nothing(make_config: Any, start_remediator: Any) -> None:
    client = await start_remediator(make_config([procedure("fix", requires_approval=True)]))
    assert (await post(client, notification(alert("fixAlert", "c3")))).status == 200
    store = store_of(client)
    (inc,) = await wait_until(lambda: store.list_incidents(state="awaiting_approval"),
                              what="approval to be required")
    resp = await client.post(f"/api/v1/incidents/{inc['id']}/deny", headers=ADMIN_AUTH)
    assert resp.status == 200
    assert (await resp.json())["incident"]["state"] == "escalated"
    again = await client.post(f"/api/v1/incidents/{inc['id']}/approve", headers=ADMIN_AUTH)
    assert again.status == 409
    assert await incident_state(client, inc["id"]) == "escalated"
    assert store.timeline(inc["id"])["attempts"] == []  # nothing ran
    assert (await client.post("/api/v1/incidents/999/deny", headers=ADMIN_AUTH)).status == 404
    assert (await client.post(f"/api/v1/incidents/{inc['id']}/deny")).status == 401
