"""Every SQL panel of the incidents dashboard runs on the remediator's real schema in PostgreSQL.

The schema is created by the remediator's own migrations (Store.migrate, Alembic), so a
renamed column breaks this test rather than a dashboard in production. Grafana's macros are expanded
the way Grafana's PostgreSQL datasource expands them.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.grafana.render import iter_queries, render_all

SQL_QUERIES = [q for text in render_all().values() for q in iter_queries(json.loads(text))
               if q.kind == "sql"]
NOW = datetime.now(UTC).replace(microsecond=0)
RANGE = (NOW - timedelta(hours=6), NOW + timedelta(minutes=1))

_INTERVALS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def expand_macros(sql: str, time_from: datetime, time_to: datetime) -> str:
    """Expand the Grafana PostgreSQL macros the dashboards use; leave nothing unexpanded."""
    start, end = time_from.isoformat(), time_to.isoformat()

    def group_alias(match: re.Match[str]) -> str:
        column, interval = match.group(1).strip(), match.group(2)
        seconds = int(interval[:-1]) * _INTERVALS[interval[-1]]
        return f'floor(extract(epoch from {column})/{seconds})*{seconds} AS "time"'

    sql = re.sub(r"\$__timeGroupAlias\(([^,]+),\s*'(\d+[smhd])'\)", group_alias, sql)
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)",
                 lambda m: f"{m.group(1).strip()} BETWEEN '{start}' AND '{end}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")
    assert "$" not in sql, f"unexpanded macro or variable in: {sql}"
    return sql


def create_incident_schema(url: str) -> None:
    """Create the incident store's tables the way the remediator does: its Alembic migrations."""
    from vigil.remediator.store import Store

    store = Store(url, pool_size=1)
    try:
        store.migrate()
    finally:
        store.dispose()


def seed(engine: sa.Engine) -> None:
    """Two incidents: one a verified procedure resolved, one escalated after a rollback."""
    from vigil.remediator import models as m

    t0 = NOW - timedelta(hours=1)
    with sa.orm.Session(engine) as session:
        note = m.Notification(received_at=t0, receiver="vigil-remediator", status="firing",
                              group_key="{}:{alertname=\"x\"}", alert_count=2, payload={})
        session.add(note)
        session.flush()
        alerts = []
        for n, name in enumerate(("TargetMemoryExhaustionPredicted", "TargetDownstreamErrors")):
            alert = m.Alert(fingerprint=f"fp{n}", starts_at=t0, alertname=name, status="firing",
                            labels={"alertname": name}, annotations={}, generator_url="",
                            first_notification_id=note.id, received_at=t0)
            session.add(alert)
            alerts.append(alert)
        session.flush()
        resolved = m.Incident(
            alert_id=alerts[0].id, fingerprint="fp0", alertname=alerts[0].alertname,
            procedure="restart", target="restart:127.0.0.1:8080", params={}, state="resolved",
            reason="verification passed", dry_run=False, alert_starts_at=t0, opened_at=t0,
            updated_at=t0 + timedelta(minutes=3), remediating_at=t0 + timedelta(seconds=5),
            resolved_at=t0 + timedelta(minutes=3))
        escalated = m.Incident(
            alert_id=alerts[1].id, fingerprint="fp1", alertname=alerts[1].alertname,
            procedure="breaker", target="breaker:127.0.0.1:8080", params={}, state="escalated",
            reason="verification failed", dry_run=False, alert_starts_at=t0, opened_at=t0,
            updated_at=t0 + timedelta(minutes=5), remediating_at=t0 + timedelta(seconds=5),
            escalated_at=t0 + timedelta(minutes=5))
        session.add_all([resolved, escalated])
        session.flush()
        for incident, state, verification in ((resolved, "succeeded", "passed"),
                                              (escalated, "rolled_back", "failed")):
            session.add(m.Attempt(
                incident_id=incident.id, procedure=incident.procedure, target=incident.target,
                state=state, reason=f"verification {verification}", dry_run=False,
                replica="r1", created_at=t0 + timedelta(seconds=5),
                started_at=t0 + timedelta(seconds=5), finished_at=t0 + timedelta(minutes=2),
                duration_seconds=115.0, steps=[], rollback_steps=[], verification=verification,
                verification_detail="demo_circuit_breaker_open == 0: no data"))
        group = m.IncidentGroup(opened_at=t0, updated_at=t0, first_alert_at=t0,
                                last_alert_at=t0, services=["demo"], shared={"job": ["demo"]},
                                root_incident_id=escalated.id,
                                root_alertname=escalated.alertname, ranking=[], ranked_at=t0)
        session.add(group)
        session.flush()
        for incident, role in ((escalated, "cause"), (resolved, "symptom")):
            session.add(m.IncidentIntel(incident_id=incident.id, group_id=group.id,
                                        service="demo", role=role,
                                        signature=f"{incident.alertname}/{role}",
                                        findings=[], impact=None))
        session.add(m.ControlFlag(name="paused", value="true", updated_at=NOW,
                                  updated_by="admin:test"))
        session.commit()


@pytest.fixture
def incident_db(pg_url: str) -> Any:
    create_incident_schema(pg_url)
    engine = sa.create_engine(pg_url)
    seed(engine)
    yield engine
    engine.dispose()


def test_the_dashboards_have_sql_panels() -> None:
    titles = {q.panel_title for q in SQL_QUERIES}
    assert {"Incidents", "Incident timeline", "Auto-resolved share (store)"} <= titles


@pytest.mark.parametrize("query", SQL_QUERIES, ids=lambda q: f"{q.panel_title}:{q.ref_id}")
def test_sql_panel_runs_on_the_incident_store(incident_db: sa.Engine, query: Any) -> None:
    sql = expand_macros(query.text, *RANGE)
    with incident_db.connect() as conn:
        rows = conn.execute(sa.text(sql)).mappings().all()
    assert rows, f"{query.panel_title}: no rows on a seeded store"
    if query.panel_title == "Incidents":
        assert [r["state"] for r in rows] and {r["state"] for r in rows} == {"resolved", "escalated"}
        closes = sorted(float(r["time_to_close"]) for r in rows)
        assert closes == [180.0, 300.0]
    elif query.panel_title == "Auto-resolved share (store)":
        assert rows[0]["auto-resolved"] == pytest.approx(0.5)
    elif query.panel_title == "Kill switch":
        assert rows[0]["paused"] == 1
    elif query.panel_title == "Incident timeline":
        events = {r["event"] for r in rows}
        assert {"opened", "resolved", "escalated", "attempt succeeded",
                "attempt rolled_back"} <= events
    elif query.panel_title.startswith("Failed verifications"):
        assert [r["state"] for r in rows] == ["rolled_back"]
    elif query.panel_title == "Correlated incident groups":
        assert [(r["root_cause"], r["incidents"]) for r in rows] == [
            ("TargetDownstreamErrors", 2)]
    elif query.panel_title.startswith("Incidents opened"):
        assert {r["metric"] for r in rows} == {"resolved", "escalated"}


def test_time_filter_excludes_incidents_outside_the_range(incident_db: sa.Engine) -> None:
    query = next(q for q in SQL_QUERIES if q.panel_title == "Incidents")
    sql = expand_macros(query.text, NOW - timedelta(days=3), NOW - timedelta(days=2))
    with incident_db.connect() as conn:
        assert conn.execute(sa.text(sql)).all() == []


def test_macro_expansion_rejects_unknown_macros() -> None:
    with pytest.raises(AssertionError):
        expand_macros("SELECT 1 WHERE $__unixEpochFilter(x)", *RANGE)
