"""The incident store's tables (SQLAlchemy 2). Grafana reads them: keep names stable.

The schema is documented in docs/remediator.md; a change here needs an Alembic revision in
remediator/migrations/versions and a docs update.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ACTIVE_INCIDENT_STATES",
    "ATTEMPT_STATES",
    "INCIDENT_STATES",
    "Alert",
    "Attempt",
    "AuditLog",
    "Base",
    "ControlFlag",
    "Incident",
    "IncidentGroup",
    "IncidentIntel",
    "Notification",
]

INCIDENT_STATES = ("open", "awaiting_approval", "remediating", "resolved", "failed", "escalated")
# States in which an incident still needs something to happen (vigil_incidents_open counts these).
ACTIVE_INCIDENT_STATES = ("open", "awaiting_approval", "remediating")
ATTEMPT_STATES = ("queued", "running", "succeeded", "failed", "rolled_back", "skipped",
                  "dry_run", "cancelled")

# JSON is TEXT-backed JSON on SQLite and json on PostgreSQL.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class Base(DeclarativeBase):
    pass


class UTCDateTime(sa.TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; naive-UTC text on SQLite; always aware UTC in Python."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _ts() -> UTCDateTime:
    return UTCDateTime()


class Notification(Base):
    """One webhook POST as received: the raw payload, kept for audit and replay."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    received_at: Mapped[datetime] = mapped_column(_ts(), index=True)
    receiver: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16))
    group_key: Mapped[str] = mapped_column(sa.Text)
    alert_count: Mapped[int] = mapped_column(sa.Integer)
    payload: Mapped[Any] = mapped_column(JSONType)


class Alert(Base):
    """One alert instance: unique on (fingerprint, starts_at), which is the dedup rule."""

    __tablename__ = "alerts"
    __table_args__ = (sa.UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),)
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    starts_at: Mapped[datetime] = mapped_column(_ts())
    ends_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    alertname: Mapped[str] = mapped_column(sa.String(255), index=True)
    status: Mapped[str] = mapped_column(sa.String(16))  # firing | resolved
    labels: Mapped[Any] = mapped_column(JSONType)
    annotations: Mapped[Any] = mapped_column(JSONType)
    generator_url: Mapped[str] = mapped_column(sa.Text, default="")
    first_notification_id: Mapped[int] = mapped_column(sa.ForeignKey("notifications.id"))
    received_at: Mapped[datetime] = mapped_column(_ts())
    resolved_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)


class Incident(Base):
    """One firing alert instance and everything done about it (state machine in docs)."""

    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    alert_id: Mapped[int] = mapped_column(sa.ForeignKey("alerts.id"), unique=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64), index=True)
    alertname: Mapped[str] = mapped_column(sa.String(255), index=True)
    procedure: Mapped[str | None] = mapped_column(sa.String(255), nullable=True, index=True)
    target: Mapped[str | None] = mapped_column(sa.String(512), nullable=True)  # cooldown key
    params: Mapped[Any] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(sa.String(32), index=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    alert_starts_at: Mapped[datetime] = mapped_column(_ts())
    opened_at: Mapped[datetime] = mapped_column(_ts(), index=True)
    updated_at: Mapped[datetime] = mapped_column(_ts())
    awaiting_approval_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    approved_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    approved_by: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    remediating_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    escalated_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    alert_resolved_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)


class Attempt(Base):
    """One run (or skip) of a procedure for an incident, with per-step results."""

    __tablename__ = "attempts"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), index=True)
    procedure: Mapped[str] = mapped_column(sa.String(255), index=True)
    target: Mapped[str] = mapped_column(sa.String(512), index=True)
    state: Mapped[str] = mapped_column(sa.String(32), index=True)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    dry_run: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    replica: Mapped[str] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(_ts(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(sa.Float, nullable=True)
    steps: Mapped[Any] = mapped_column(JSONType)  # [{name, action, status, output, duration_seconds}]
    rollback_steps: Mapped[Any] = mapped_column(JSONType)
    verification: Mapped[str | None] = mapped_column(sa.String(16), nullable=True)
    verification_detail: Mapped[str] = mapped_column(sa.Text, default="")


class AuditLog(Base):
    """Who did what and when: state changes, approvals, pause/resume, escalations."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    at: Mapped[datetime] = mapped_column(_ts(), index=True)
    actor: Mapped[str] = mapped_column(sa.String(255))
    action: Mapped[str] = mapped_column(sa.String(64))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incidents.id"), nullable=True,
                                                    index=True)
    detail: Mapped[Any] = mapped_column(JSONType)


class ControlFlag(Base):
    """Shared switches (the kill switch), so every replica sees a pause at once."""

    __tablename__ = "control_flags"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(255))
    updated_at: Mapped[datetime] = mapped_column(_ts())
    updated_by: Mapped[str] = mapped_column(sa.String(255))


class IncidentGroup(Base):
    """Incidents correlated into one group (time window, services, shared labels); ranked causes."""

    __tablename__ = "incident_groups"
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"),
                                    primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(_ts(), index=True)
    updated_at: Mapped[datetime] = mapped_column(_ts())
    first_alert_at: Mapped[datetime] = mapped_column(_ts())
    last_alert_at: Mapped[datetime] = mapped_column(_ts(), index=True)
    services: Mapped[Any] = mapped_column(JSONType)  # service names of the members
    shared: Mapped[Any] = mapped_column(JSONType)  # {label: [values]} of the shared labels
    root_incident_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    root_alertname: Mapped[str | None] = mapped_column(sa.String(255), nullable=True)
    ranking: Mapped[Any] = mapped_column(JSONType)  # [{incident, alertname, score, evidence}]
    ranked_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
    # members (incident_intel rows), kept with them under the correlation lock, so that
    # finding a group with room is not a count over every member of every group in a storm
    member_count: Mapped[int] = mapped_column(sa.Integer, server_default="0")


class IncidentIntel(Base):
    """Per incident: its group, service, role, signature, findings involved and measured impact."""

    __tablename__ = "incident_intel"
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incidents.id"), primary_key=True)
    group_id: Mapped[int] = mapped_column(sa.ForeignKey("incident_groups.id"), index=True)
    service: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(255))
    signature: Mapped[str] = mapped_column(sa.String(600), index=True)
    findings: Mapped[Any] = mapped_column(JSONType)  # finding checks that explain it
    impact: Mapped[Any] = mapped_column(JSONType, nullable=True)
    impact_at: Mapped[datetime | None] = mapped_column(_ts(), nullable=True)
