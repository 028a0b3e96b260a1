"""The incident store: durable ingest with database-enforced dedup, and incident bookkeeping.

Every method is synchronous (SQLAlchemy Core on a pooled engine); the service calls them
through a thread pool. SQLite by default, PostgreSQL for production and replicas.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased
from vigil.remediator.matching import Match
from vigil.remediator.models import (
    ACTIVE_INCIDENT_STATES,
    Alert,
    Attempt,
    AuditLog,
    ControlFlag,
    Incident,
    Notification,
    UTCDateTime,
)
from vigil.remediator.payload import ParsedNotification

from vigil.db import normalize_url
from vigil.paths import package_dir

__all__ = ["IngestResult", "Store", "StoreError", "normalise_url", "store_unavailable", "utcnow"]

log = logging.getLogger("vigil.remediator.store")
MIGRATIONS_DIR = package_dir("vigil.remediator.migrations")
# control_flags name of one procedure's kill switch: paused:<procedure>
PROCEDURE_PAUSE = "paused:"
_CHUNK = 400
UTC_TYPE = UTCDateTime()
# attempts that count against the budget / start a cooldown
BUDGET_STATES = ("queued", "running", "succeeded", "failed", "rolled_back")
COOLDOWN_STATES = ("running", "succeeded", "failed", "rolled_back", "dry_run")


class StoreError(RuntimeError):
    """The store could not be reached or refused a write."""


def normalise_url(url: str) -> str:
    """The URL with bare postgresql:// pinned to psycopg2 (see vigil.db)."""
    return normalize_url(url).render_as_string(hide_password=False)


def store_unavailable(exc: BaseException) -> bool:
    """The store could not be reached (as opposed to refusing one item's data)."""
    return isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError,
                            TimeoutError, OSError))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class IngestResult:
    outcomes: list[str] = field(default_factory=list)  # per alert: new|duplicate|resolved|unmatched
    new_incidents: list[int] = field(default_factory=list)  # open incidents to consider
    escalate: list[int] = field(default_factory=list)  # unmatched or refused: tell a human
    resolved: list[tuple[int, float]] = field(default_factory=list)  # (incident, seconds to resolve)
    closed: list[int] = field(default_factory=list)  # incidents whose work must stop


def _incident_row(a: Any, match: Match, dry: bool, now: datetime) -> dict[str, Any]:
    """The incident a new firing alert opens (without alert_id): open, or escalated at once."""
    # every row has the same keys: one executemany for the batch (a batch that mixed open
    # and escalated incidents failed on a missing escalated_at)
    row = {"fingerprint": a.fingerprint, "alertname": a.labels["alertname"],
           "alert_starts_at": a.starts_at, "opened_at": now, "updated_at": now,
           "params": match.params, "escalated_at": None}
    if match.procedure is None:
        row.update(procedure=None, target=None, state="escalated",
                   reason="no procedure matches this alert", escalated_at=now, dry_run=dry)
    elif match.refused:
        row.update(procedure=match.procedure.name, target=None, state="escalated",
                   reason=f"refused: {match.refused}", escalated_at=now,
                   dry_run=dry or match.procedure.dry_run)
    else:
        row.update(procedure=match.procedure.name, target=match.target, state="open",
                   reason="", dry_run=dry or match.procedure.dry_run)
    return row


# One batch's notifications, firing alerts (ON CONFLICT DO NOTHING: the dedup rule) and the
# incidents of the alerts that were new, in one statement. Notification ids are drawn first so
# that alerts can point at theirs; the foreign keys are checked at the end of the statement.
# The alerts go in ordered by their unique key (the caller sorted them): concurrent writers
# take the index's row locks in one order.
_INGEST_PG = """
WITH ids AS MATERIALIZED (
    SELECT ord, nextval(pg_get_serial_sequence('notifications', 'id')) AS id
    FROM generate_series(1, %(n)s) AS ord
), notes AS (
    INSERT INTO notifications (id, received_at, receiver, status, group_key, alert_count, payload)
    SELECT ids.id, %(now)s, t.receiver, t.status, t.group_key, t.alert_count, t.payload::jsonb
    FROM unnest(%(receivers)s::text[], %(statuses)s::text[], %(group_keys)s::text[],
                %(counts)s::int[], %(payloads)s::text[])
         WITH ORDINALITY AS t(receiver, status, group_key, alert_count, payload, ord)
    JOIN ids USING (ord)
    ORDER BY t.ord
    RETURNING id
), input AS MATERIALIZED (
    SELECT * FROM unnest(%(fingerprints)s::text[], %(starts)s::timestamptz[],
                         %(alertnames)s::text[], %(labels)s::text[], %(annotations)s::text[],
                         %(generator_urls)s::text[], %(notes)s::int[], %(procedures)s::text[],
                         %(targets)s::text[], %(params)s::text[], %(states)s::text[],
                         %(reasons)s::text[], %(dry_runs)s::boolean[])
         WITH ORDINALITY AS a(fingerprint, starts_at, alertname, labels, annotations,
                              generator_url, note, procedure, target, params, state, reason,
                              dry_run, k)
), new_alerts AS (
    INSERT INTO alerts (fingerprint, starts_at, ends_at, alertname, status, labels, annotations,
                        generator_url, first_notification_id, received_at, resolved_at)
    SELECT a.fingerprint, a.starts_at, NULL, a.alertname, 'firing', a.labels::jsonb,
           a.annotations::jsonb, a.generator_url, ids.id, %(now)s, NULL
    FROM input a JOIN ids ON ids.ord = a.note
    ORDER BY a.k
    ON CONFLICT (fingerprint, starts_at) DO NOTHING
    RETURNING id, fingerprint, starts_at
), new_incidents AS (
    INSERT INTO incidents (alert_id, fingerprint, alertname, procedure, target, params, state,
                           reason, dry_run, alert_starts_at, opened_at, updated_at, escalated_at)
    SELECT n.id, a.fingerprint, a.alertname, a.procedure, a.target, a.params::jsonb, a.state,
           a.reason, a.dry_run, a.starts_at, %(now)s, %(now)s,
           CASE WHEN a.state = 'escalated' THEN %(now)s::timestamptz END
    FROM new_alerts n JOIN input a ON a.fingerprint = n.fingerprint AND a.starts_at = n.starts_at
    ORDER BY a.k
    RETURNING id, fingerprint, alert_starts_at
)
SELECT 'n' AS kind, ord, id, NULL AS fingerprint, NULL::timestamptz AS starts_at FROM ids
UNION ALL
SELECT 'i', NULL, id, fingerprint, alert_starts_at FROM new_incidents
"""


def _row(obj: Any) -> dict[str, Any]:
    return dict(obj._mapping)


class Store:
    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        url = normalise_url(url)
        self.url = url
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if url.startswith("sqlite"):
            db_path = sa.engine.make_url(url).database
            if db_path and db_path != ":memory:":
                Path(db_path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            # a store that stops answering (partition, frozen server) must fail in bounded
            # time: connect timeout, TCP keepalives, and a cap on unacknowledged sends
            kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_timeout=10,
                          connect_args={"connect_timeout": 5, "keepalives": 1,
                                        "keepalives_idle": 10, "keepalives_interval": 3,
                                        "keepalives_count": 3, "tcp_user_timeout": 15000})
        self.engine = sa.create_engine(url, **kwargs)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        # the ingest statements, built once: a reused statement keeps its cache key and
        # compiled form (building them per batch was a measurable share of ingest's CPU)
        self._new_notifications = sa.insert(Notification).returning(
            Notification.id, sort_by_parameter_order=True)
        self._new_alerts = self._insert(Alert).on_conflict_do_nothing(
            index_elements=["fingerprint", "starts_at"]
        ).returning(Alert.id, Alert.fingerprint, Alert.starts_at)
        self._new_incidents = sa.insert(Incident).returning(
            Incident.id, sort_by_parameter_order=True)

    def dispose(self) -> None:
        self.engine.dispose()

    # --- schema ------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Upgrade the schema to the newest Alembic revision (serialised across replicas)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7431000007)"))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    # --- ingest ------------------------------------------------------------------------------

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def ingest(self, batch: list[tuple[ParsedNotification, list[Match], bool]]) -> list[IngestResult]:
        """Store notifications and their alerts in one transaction; decide outcomes per alert.

        batch items: (notification, match per alert, global dry_run). Returns one result per item.
        """
        now = utcnow()
        results = [IngestResult() for _ in batch]
        # firing alerts: insert-or-nothing; the unique constraint decides who is new.
        # Sorted by the unique key: concurrent writers take row locks in one order. Only the
        # first of a key within the batch is offered; the others are duplicates already.
        firing = sorted(((i, j, a) for i, (n, _, _) in enumerate(batch)
                         for j, a in enumerate(n.alerts) if a.status == "firing"),
                        key=lambda t: (t[2].fingerprint, t[2].starts_at))
        outcome: dict[tuple[int, int], str] = {}
        offered: list[tuple[int, int, Any, dict[str, Any]]] = []
        keys: set[tuple[str, datetime]] = set()
        for i, j, a in firing:
            if (a.fingerprint, a.starts_at) in keys:
                outcome[(i, j)] = "duplicate"
                continue
            keys.add((a.fingerprint, a.starts_at))
            offered.append((i, j, a, _incident_row(a, batch[i][1][j], batch[i][2], now)))
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                note_ids, stored = self._insert_firing_pg(conn, batch, offered, now)
            else:
                note_ids, stored = self._insert_firing(conn, batch, offered, now)
            for i, j, a, row in offered:
                got = stored.get((a.fingerprint, a.starts_at))
                if got is None:
                    outcome[(i, j)] = "duplicate"
                    continue
                outcome[(i, j)] = "unmatched" if row["procedure"] is None else "new"
                target = results[i]
                (target.new_incidents if row["state"] == "open" else target.escalate).append(got)
            # resolved alerts: close the incident and cancel queued work
            seen: set[tuple[str, datetime]] = set()
            resolved = sorted(((i, j, a) for i, (n, _, _) in enumerate(batch)
                               for j, a in enumerate(n.alerts) if a.status == "resolved"),
                              key=lambda t: (t[2].fingerprint, t[2].starts_at))
            for i, j, a in resolved:
                key = (a.fingerprint, a.starts_at)
                if key in seen:
                    outcome[(i, j)] = "duplicate"
                    continue
                seen.add(key)
                outcome[(i, j)] = self._resolve(conn, a, note_ids[i], now, results[i])
            for i, (n, _, _) in enumerate(batch):
                results[i].outcomes = [outcome[(i, j)] for j in range(len(n.alerts))]
        return results

    def _insert_firing(self, conn: sa.Connection, batch: list[Any],
                       offered: list[tuple[int, int, Any, dict[str, Any]]], now: datetime
                       ) -> tuple[list[int], dict[tuple[str, datetime], int]]:
        """Notifications, firing alerts and their incidents: three statements (SQLite).

        Returns the notification ids and {(fingerprint, starts_at): incident id} of the
        alerts that were new."""
        note_ids = list(conn.execute(
            self._new_notifications,
            [{"received_at": now, "receiver": n.receiver, "status": n.status,
              "group_key": n.group_key, "alert_count": len(n.alerts), "payload": n.raw}
             for n, _, _ in batch],
        ).scalars())
        inserted: dict[tuple[str, datetime], int] = {}
        if offered:
            # executemany with RETURNING, batched by insertmanyvalues
            rows = [{"fingerprint": a.fingerprint, "starts_at": a.starts_at, "ends_at": None,
                     "alertname": a.labels["alertname"], "status": "firing", "labels": a.labels,
                     "annotations": a.annotations, "generator_url": a.generator_url,
                     "first_notification_id": note_ids[i], "received_at": now,
                     "resolved_at": None}
                    for i, _, a, _ in offered]
            for r in conn.execute(self._new_alerts, rows):
                inserted[(r.fingerprint, r.starts_at)] = r.id
        new = [(a, {**row, "alert_id": inserted[(a.fingerprint, a.starts_at)]})
               for _, _, a, row in offered if (a.fingerprint, a.starts_at) in inserted]
        stored: dict[tuple[str, datetime], int] = {}
        for k in range(0, len(new), _CHUNK):
            chunk = new[k:k + _CHUNK]
            ids = conn.execute(self._new_incidents, [row for _, row in chunk]).scalars()
            for (a, _), inc_id in zip(chunk, ids, strict=True):
                stored[(a.fingerprint, a.starts_at)] = int(inc_id)
        return note_ids, stored

    def _insert_firing_pg(self, conn: sa.Connection, batch: list[Any],
                          offered: list[tuple[int, int, Any, dict[str, Any]]], now: datetime
                          ) -> tuple[list[int], dict[tuple[str, datetime], int]]:
        """The same as _insert_firing in one statement on PostgreSQL (data-modifying CTEs).

        One round trip and one execute instead of three: per batch, SQLAlchemy's per-execute
        CPU and the round trips (each also a wait for the interpreter lock afterwards) were
        most of ingest's time. The rows go in as arrays through unnest; nothing the
        statement runs is built from the payload.
        """
        dumps = json.dumps
        inc = [row for *_, row in offered]
        params = {
            "now": now, "n": len(batch),
            "receivers": [n.receiver for n, _, _ in batch],
            "statuses": [n.status for n, _, _ in batch],
            "group_keys": [n.group_key for n, _, _ in batch],
            "counts": [len(n.alerts) for n, _, _ in batch],
            "payloads": [dumps(n.raw) for n, _, _ in batch],
            "fingerprints": [a.fingerprint for _, _, a, _ in offered],
            "starts": [a.starts_at for _, _, a, _ in offered],
            "alertnames": [a.labels["alertname"] for _, _, a, _ in offered],
            "labels": [dumps(a.labels) for _, _, a, _ in offered],
            "annotations": [dumps(a.annotations) for _, _, a, _ in offered],
            "generator_urls": [a.generator_url for _, _, a, _ in offered],
            "notes": [i + 1 for i, _, _, _ in offered],
            "procedures": [r["procedure"] for r in inc],
            "targets": [r["target"] for r in inc],
            "params": [dumps(r["params"]) for r in inc],
            "states": [r["state"] for r in inc],
            "reasons": [r["reason"] for r in inc],
            "dry_runs": [bool(r["dry_run"]) for r in inc],
        }
        notes: dict[int, int] = {}
        stored: dict[tuple[str, datetime], int] = {}
        for r in conn.exec_driver_sql(_INGEST_PG, params):
            if r.kind == "n":
                notes[int(r.ord)] = int(r.id)
            else:
                starts = UTC_TYPE.process_result_value(r.starts_at, self.engine.dialect)
                stored[(r.fingerprint, starts)] = int(r.id)
        return [notes[k] for k in range(1, len(batch) + 1)], stored

    def _resolve(self, conn: sa.Connection, a: Any, note_id: int, now: datetime,
                 result: IngestResult) -> str:
        stmt = self._insert(Alert).values(
            fingerprint=a.fingerprint, starts_at=a.starts_at, ends_at=a.ends_at,
            alertname=a.labels["alertname"], status="resolved", labels=a.labels,
            annotations=a.annotations, generator_url=a.generator_url,
            first_notification_id=note_id, received_at=now, resolved_at=now,
        ).on_conflict_do_nothing(index_elements=["fingerprint", "starts_at"]).returning(Alert.id)
        if conn.execute(stmt).first() is not None:
            return "resolved"  # we never saw it firing: nothing to close
        alert_id = conn.execute(
            sa.update(Alert).where(Alert.fingerprint == a.fingerprint, Alert.starts_at == a.starts_at,
                                   Alert.status == "firing")
            .values(status="resolved", ends_at=a.ends_at, resolved_at=now).returning(Alert.id)
        ).scalar()
        if alert_id is None:
            return "duplicate"
        closed = conn.execute(
            sa.update(Incident).where(Incident.alert_id == alert_id,
                                      Incident.state.in_(ACTIVE_INCIDENT_STATES))
            .values(state="resolved", resolved_at=now, alert_resolved_at=now, updated_at=now,
                    reason="alert resolved")
            .returning(Incident.id, Incident.alert_starts_at)
        ).all()
        conn.execute(sa.update(Incident).where(Incident.alert_id == alert_id,
                                               Incident.alert_resolved_at.is_(None))
                     .values(alert_resolved_at=now, updated_at=now))
        for inc_id, started in closed:
            result.closed.append(inc_id)
            result.resolved.append((inc_id, max(0.0, (now - started).total_seconds())))
            conn.execute(sa.update(Attempt).where(Attempt.incident_id == inc_id,
                                                  Attempt.state == "queued")
                         .values(state="cancelled", reason="alert resolved", finished_at=now))
            conn.execute(sa.insert(AuditLog).values(
                at=now, actor="webhook", action="incident.state", incident_id=inc_id,
                detail={"state": "resolved", "reason": "alert resolved"}))
        return "resolved"

    # --- incidents and attempts ------------------------------------------------------------------

    def incident(self, incident_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(Incident).where(Incident.id == incident_id)).first()
            return _row(row) if row else None

    def incidents_with_alerts(self, incident_ids: list[int]
                              ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """`incident_with_alert` for many incidents, in id order, in a few statements."""
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        with self.engine.connect() as conn:
            for i in range(0, len(incident_ids), _CHUNK):
                incs = {r.id: _row(r) for r in conn.execute(sa.select(Incident).where(
                    Incident.id.in_(incident_ids[i:i + _CHUNK])))}
                alerts = {r.id: _row(r) for r in conn.execute(sa.select(Alert).where(
                    Alert.id.in_({inc["alert_id"] for inc in incs.values()})))}
                out.extend((incs[k], alerts[incs[k]["alert_id"]]) for k in sorted(incs))
        return out

    def incident_with_alert(self, incident_id: int) -> tuple[dict[str, Any], dict[str, Any]] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(Incident).where(Incident.id == incident_id)).first()
            if row is None:
                return None
            alert = conn.execute(sa.select(Alert).where(Alert.id == row.alert_id)).first()
            assert alert is not None
            return _row(row), _row(alert)

    def transition(self, incident_id: int, from_states: tuple[str, ...], to_state: str, *,
                   reason: str = "", actor: str = "remediator", **stamps: Any) -> bool:
        """Move an incident between states only if it is in one of from_states (a claim)."""
        with self.engine.begin() as conn:
            return self._transition(conn, incident_id, from_states, to_state, reason=reason,
                                    actor=actor, **stamps)

    def finish_attempt(self, attempt_id: int, values: dict[str, Any], *,
                       only_if: tuple[str, ...] | None = None,
                       move: tuple[int, tuple[str, ...], str, str] | None = None,
                       actor: str = "remediator") -> tuple[bool, bool]:
        """An attempt's final record and its incident's transition, in ONE transaction.

        move = (incident_id, from_states, to_state, reason). A crash cannot separate the two
        writes (an attempt `succeeded` beside an incident left `remediating` for good).
        Returns (attempt updated, incident moved); with only_if and no matching attempt,
        nothing is written."""
        with self.engine.begin() as conn:
            stmt = sa.update(Attempt).where(Attempt.id == attempt_id)
            if only_if:
                stmt = stmt.where(Attempt.state.in_(only_if))
            if not conn.execute(stmt.values(**values)).rowcount:
                return False, False
            if move is None:
                return True, False
            incident_id, from_states, to_state, reason = move
            return True, self._transition(conn, incident_id, from_states, to_state,
                                          reason=reason, actor=actor)

    def _transition(self, conn: sa.Connection, incident_id: int, from_states: tuple[str, ...],
                    to_state: str, *, reason: str, actor: str, **stamps: Any) -> bool:
        now = utcnow()
        values: dict[str, Any] = {"state": to_state, "updated_at": now, "reason": reason}
        stamp = {"remediating": "remediating_at", "resolved": "resolved_at", "failed": "failed_at",
                 "escalated": "escalated_at", "awaiting_approval": "awaiting_approval_at"}.get(to_state)
        if stamp:
            values[stamp] = now
        values.update(stamps)
        done = conn.execute(
            sa.update(Incident).where(Incident.id == incident_id,
                                      Incident.state.in_(from_states)).values(**values)
        ).rowcount
        if done:
            conn.execute(sa.insert(AuditLog).values(
                at=now, actor=actor, action="incident.state", incident_id=incident_id,
                detail={"state": to_state, "reason": reason}))
        return bool(done)

    def set_reason(self, incident_id: int, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.update(Incident).where(Incident.id == incident_id)
                         .values(reason=reason, updated_at=utcnow()))

    def create_attempt(self, incident_id: int, procedure: str, target: str, state: str,
                       replica: str, *, reason: str = "", dry_run: bool = False) -> int:
        now = utcnow()
        with self.engine.begin() as conn:
            return int(conn.execute(sa.insert(Attempt).values(
                incident_id=incident_id, procedure=procedure, target=target, state=state,
                reason=reason, dry_run=dry_run, replica=replica, created_at=now,
                heartbeat_at=now, steps=[], rollback_steps=[], verification=None,
                verification_detail="",
                finished_at=now if state in ("skipped", "cancelled") else None,
            ).returning(Attempt.id)).scalar_one())

    def update_attempt(self, attempt_id: int, *, only_if: tuple[str, ...] | None = None,
                       **values: Any) -> bool:
        with self.engine.begin() as conn:
            stmt = sa.update(Attempt).where(Attempt.id == attempt_id)
            if only_if:
                stmt = stmt.where(Attempt.state.in_(only_if))
            return bool(conn.execute(stmt.values(**values)).rowcount)

    def heartbeat(self, attempt_ids: list[int], incident_ids: list[int]) -> dict[int, str]:
        """Stamp a replica's attempts (queued or running) as alive, all in one transaction;
        return their incidents' states (so a resolve on another replica can stop them)."""
        now = utcnow()
        states: dict[int, str] = {}
        with self.engine.begin() as conn:
            for i in range(0, len(attempt_ids), _CHUNK):
                conn.execute(sa.update(Attempt).where(Attempt.id.in_(attempt_ids[i:i + _CHUNK]))
                             .values(heartbeat_at=now))
            for i in range(0, len(incident_ids), _CHUNK):
                states.update((int(k), str(v)) for k, v in conn.execute(
                    sa.select(Incident.id, Incident.state)
                    .where(Incident.id.in_(incident_ids[i:i + _CHUNK]))))
        return states

    def attempt(self, attempt_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(Attempt).where(Attempt.id == attempt_id)).first()
            return _row(row) if row else None

    def last_run(self, procedure: str, target: str) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(sa.func.max(sa.func.coalesce(Attempt.started_at, Attempt.created_at)))
                .where(Attempt.procedure == procedure, Attempt.target == target,
                       Attempt.state.in_(COOLDOWN_STATES))).scalar()

    def count_attempts(self, procedure: str, target: str, since: datetime) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(
                sa.select(sa.func.count()).select_from(Attempt)
                .where(Attempt.procedure == procedure, Attempt.target == target,
                       Attempt.state.in_(BUDGET_STATES), Attempt.created_at >= since)).scalar_one())

    def open_incidents(self, limit: int = 200) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(
                sa.select(Incident.id).where(Incident.state == "open", Incident.procedure.is_not(None))
                .order_by(Incident.id).limit(limit)).scalars())

    def orphaned_attempts(self, replica: str | None, stale_after: float) -> list[dict[str, Any]]:
        """Attempts left queued/running by this replica, or by any replica that stopped beating."""
        stale = utcnow() - timedelta(seconds=stale_after)
        cond = Attempt.heartbeat_at < stale
        if replica is not None:
            cond = sa.or_(Attempt.replica == replica, cond)
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(Attempt).where(
                Attempt.state.in_(("queued", "running")), cond)).all()
            return [_row(r) for r in rows]

    def ended_but_remediating(self) -> list[dict[str, Any]]:
        """Incidents left `remediating` although their latest attempt has ended: what a crash
        between an attempt's final record and the incident's transition left behind (when
        they were two transactions). Each row is the incident's latest attempt."""
        other = aliased(Attempt)
        latest = (sa.select(sa.func.max(other.id)).where(other.incident_id == Incident.id)
                  .correlate(Incident).scalar_subquery())
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Attempt).join(Incident, Attempt.id == latest)
                .where(Incident.state == "remediating",
                       Attempt.state.not_in(("queued", "running")))).all()
            return [_row(r) for r in rows]

    def count_stuck(self, bounds: dict[str, tuple[float, float]]) -> dict[str, int]:
        """Per procedure, incidents non-terminal longer than the procedure's time bound:
        `remediating` for longer than bounds[p][0] seconds, or `open` for longer than the
        bound plus the cooldown, bounds[p][1]. (awaiting_approval waits for a human.)"""
        now = utcnow()
        conds = [sa.and_(Incident.procedure == name, sa.or_(
            sa.and_(Incident.state == "remediating",
                    Incident.updated_at < now - timedelta(seconds=running)),
            sa.and_(Incident.state == "open",
                    Incident.updated_at < now - timedelta(seconds=waiting))))
            for name, (running, waiting) in bounds.items()]
        counts = dict.fromkeys(bounds, 0)
        if not conds:
            return counts
        with self.engine.connect() as conn:
            for name, n in conn.execute(
                    sa.select(Incident.procedure, sa.func.count()).where(sa.or_(*conds))
                    .group_by(Incident.procedure)):
                counts[name] = int(n)
        return counts

    def count_active_incidents(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(Incident)
                                    .where(Incident.state.in_(ACTIVE_INCIDENT_STATES))).scalar_one())

    def audit(self, actor: str, action: str, incident_id: int | None, detail: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.insert(AuditLog).values(at=utcnow(), actor=actor, action=action,
                                                    incident_id=incident_id, detail=detail))

    def claim(self, incident_id: int, *, procedure: str, target: str, cooldown: float,
               max_attempts: int, window: float, dry_run: bool, replica: str,
               ignore_cooldown: bool, blast: tuple[int | None, int | None] | None = None
               ) -> tuple[str, Any]:
        """Check cooldown, budget and blast radius and move open -> remediating in one
        transaction.

        On PostgreSQL an advisory lock on the target serialises replicas, so two replicas cannot
        both pass the cooldown for one target; with a blast radius, a second lock on the
        procedure makes its limits exact fleet-wide. Returns (claimed, attempt_id) |
        (cooldown, last run) | (budget, attempts used) | (blast, reason: the incident is
        escalated) | (gone, None).
        """
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": target})
            return self._claim(conn, incident_id, procedure=procedure, target=target,
                               cooldown=cooldown, max_attempts=max_attempts, window=window,
                               dry_run=dry_run, replica=replica,
                               ignore_cooldown=ignore_cooldown, blast=blast)

    def claim_many(self, claims: list[dict[str, Any]]) -> list[tuple[str, Any]]:
        """`claim` for many incidents (keyword arguments of `claim` each) in one transaction.

        On PostgreSQL the targets' advisory locks are all taken first, in the order of their
        hashes (the lock keys), so two replicas claiming overlapping batches cannot deadlock.
        Incidents of one target are decided in order: the second sees the first's attempt."""
        with self.engine.begin() as conn:
            if self.dialect == "postgresql" and claims:
                conn.execute(sa.text(
                    "SELECT pg_advisory_xact_lock(h) FROM (SELECT DISTINCT hashtext(t) AS h "
                    "FROM unnest(CAST(:targets AS text[])) AS t) AS k ORDER BY h"),
                    {"targets": sorted({c["target"] for c in claims})})
            return [self._claim(conn, **c) for c in claims]

    def _claim(self, conn: sa.Connection, incident_id: int, *, procedure: str, target: str,
               cooldown: float, max_attempts: int, window: float, dry_run: bool, replica: str,
               ignore_cooldown: bool, blast: tuple[int | None, int | None] | None
               ) -> tuple[str, Any]:
        now = utcnow()
        state = conn.execute(sa.select(Incident.state).where(Incident.id == incident_id)).scalar()
        if state != "open":
            return "gone", None
        if not ignore_cooldown:
            last = conn.execute(
                sa.select(sa.func.max(sa.func.coalesce(Attempt.started_at, Attempt.created_at)))
                .where(Attempt.procedure == procedure, Attempt.target == target,
                       Attempt.state.in_(COOLDOWN_STATES))).scalar()
            if last is not None:
                last = UTC_TYPE.process_result_value(last, self.engine.dialect)
                if (now - last).total_seconds() < cooldown:
                    return "cooldown", last
        if not dry_run:
            used = int(conn.execute(
                sa.select(sa.func.count()).select_from(Attempt)
                .where(Attempt.procedure == procedure, Attempt.target == target,
                       Attempt.state.in_(BUDGET_STATES),
                       Attempt.created_at >= now - timedelta(seconds=window))).scalar_one())
            if used >= max_attempts:
                return "budget", used
            held = self._blast_radius(conn, procedure, blast, now) if blast else None
            if held:
                conn.execute(sa.update(Incident).where(Incident.id == incident_id).values(
                    state="escalated", reason=held, updated_at=now, escalated_at=now))
                conn.execute(sa.insert(AuditLog).values(
                    at=now, actor=f"remediator:{replica}", action="incident.state",
                    incident_id=incident_id, detail={"state": "escalated", "reason": held}))
                return "blast", held
        conn.execute(sa.update(Incident).where(Incident.id == incident_id).values(
            state="remediating", updated_at=now, reason="remediation queued",
            remediating_at=sa.func.coalesce(Incident.remediating_at, now)))
        attempt_id = conn.execute(sa.insert(Attempt).values(
            incident_id=incident_id, procedure=procedure, target=target, state="queued",
            reason="", dry_run=dry_run, replica=replica, created_at=now, heartbeat_at=now,
            steps=[], rollback_steps=[], verification=None, verification_detail="",
        ).returning(Attempt.id)).scalar_one()
        conn.execute(sa.insert(AuditLog).values(
            at=now, actor=f"remediator:{replica}", action="incident.state", incident_id=incident_id,
            detail={"state": "remediating", "attempt": attempt_id, "dry_run": dry_run}))
        return "claimed", int(attempt_id)


    def _blast_radius(self, conn: sa.Connection, procedure: str,
                      blast: tuple[int | None, int | None], now: datetime) -> str | None:
        """Why this procedure may not take one more target now (or None)."""
        max_targets, max_per_hour = blast
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"),
                         {"t": f"blast-radius:{procedure}"})
        targets = sa.select(sa.func.count(sa.distinct(Attempt.target))).where(
            Attempt.procedure == procedure)
        if max_targets is not None:
            active = int(conn.execute(targets.where(
                Attempt.state.in_(("queued", "running")))).scalar_one())
            if active >= max_targets:
                return (f"blast radius: {active} targets of {procedure} already remediating "
                        f"(max_targets {max_targets})")
        if max_per_hour is not None:
            started = int(conn.execute(targets.where(
                Attempt.state.in_(BUDGET_STATES),
                Attempt.created_at >= now - timedelta(hours=1))).scalar_one())
            if started >= max_per_hour:
                return (f"blast radius: {started} targets of {procedure} started within the "
                        f"last hour (max_per_hour {max_per_hour})")
        return None

    def claim_blast_notice(self, procedure: str, every: float) -> tuple[bool, int, list[int]]:
        """Take the right to send the procedure's one blast-radius escalation (at most one per
        `every` seconds, fleet-wide). Returns (taken, incidents held since the last notice,
        up to 100 of their ids)."""
        now = utcnow()
        name = f"blast_notice:{procedure}"[:64]
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": name})
            last = conn.execute(sa.select(ControlFlag.updated_at)
                                .where(ControlFlag.name == name)).scalar()
            if last is not None:
                last = UTC_TYPE.process_result_value(last, self.engine.dialect)
                if (now - last).total_seconds() < every:
                    return False, 0, []
            stmt = self._insert(ControlFlag).values(name=name, value="sent", updated_at=now,
                                                    updated_by="remediator")
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["name"], set_={"updated_at": now}))
            held = (sa.select(Incident.id).where(
                Incident.procedure == procedure, Incident.state == "escalated",
                Incident.reason.like("blast radius:%"),
                Incident.escalated_at >= (last or now - timedelta(seconds=every))))
            ids = list(conn.execute(held.order_by(Incident.id)).scalars())
            return True, len(ids), ids[:100]

    # --- kill switch ---------------------------------------------------------------------------

    def paused(self) -> bool | None:
        """The shared kill switch, or None when nobody has set it yet."""
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(ControlFlag.value).where(ControlFlag.name == "paused")).scalar()
            return None if value is None else value == "true"

    def set_paused(self, paused: bool, actor: str, procedure: str | None = None) -> None:
        """Set the kill switch, for every procedure or (`procedure`) for one, and audit it."""
        now = utcnow()
        value = "true" if paused else "false"
        name = "paused" if procedure is None else f"{PROCEDURE_PAUSE}{procedure}"
        with self.engine.begin() as conn:
            stmt = self._insert(ControlFlag).values(name=name, value=value, updated_at=now,
                                                    updated_by=actor)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["name"], set_={"value": value, "updated_at": now, "updated_by": actor}))
            conn.execute(sa.insert(AuditLog).values(
                at=now, actor=actor, action="control.pause" if paused else "control.resume",
                incident_id=None, detail={} if procedure is None else {"procedure": procedure}))

    def paused_procedures(self) -> set[str]:
        """The procedures paused one by one (the global switch aside)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ControlFlag.name).where(
                ControlFlag.name.startswith(PROCEDURE_PAUSE, autoescape=True),
                ControlFlag.value == "true"))
            return {name[len(PROCEDURE_PAUSE):] for (name,) in rows}

    def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        """The most recent audit entries, newest first."""
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(
                sa.select(AuditLog).order_by(AuditLog.id.desc()).limit(limit))]

    # --- admin queries -------------------------------------------------------------------------

    def list_incidents(self, *, state: str | None = None, procedure: str | None = None,
                       alertname: str | None = None, since: datetime | None = None,
                       limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        stmt = sa.select(Incident).order_by(Incident.id.desc()).limit(limit).offset(offset)
        if state:
            stmt = stmt.where(Incident.state == state)
        if procedure:
            stmt = stmt.where(Incident.procedure == procedure)
        if alertname:
            stmt = stmt.where(Incident.alertname == alertname)
        if since:
            stmt = stmt.where(Incident.opened_at >= since)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(stmt)]

    def timeline(self, incident_id: int) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            inc = conn.execute(sa.select(Incident).where(Incident.id == incident_id)).first()
            if inc is None:
                return None
            alert = conn.execute(sa.select(Alert).where(Alert.id == inc.alert_id)).first()
            attempts = conn.execute(sa.select(Attempt).where(Attempt.incident_id == incident_id)
                                    .order_by(Attempt.id)).all()
            audit = conn.execute(sa.select(AuditLog).where(AuditLog.incident_id == incident_id)
                                 .order_by(AuditLog.id)).all()
            return {"incident": _row(inc), "alert": _row(alert) if alert else None,
                    "attempts": [_row(a) for a in attempts], "audit": [_row(a) for a in audit]}
