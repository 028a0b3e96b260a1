"""Initial incident store: notifications, alerts, incidents, attempts, audit log, control flags.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from vigil.remediator.models import JSONType, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notifications",
        sa.Column("id", BIGID, primary_key=True),
        ts("received_at", False),
        sa.Column("receiver", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("payload", JSONType, nullable=False),
    )
    op.create_index("ix_notifications_received_at", "notifications", ["received_at"])
    op.create_table(
        "alerts",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        ts("starts_at", False),
        ts("ends_at"),
        sa.Column("alertname", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("labels", JSONType, nullable=False),
        sa.Column("annotations", JSONType, nullable=False),
        sa.Column("generator_url", sa.Text, nullable=False),
        sa.Column("first_notification_id", BIGID, sa.ForeignKey("notifications.id"), nullable=False),
        ts("received_at", False),
        ts("resolved_at"),
        sa.UniqueConstraint("fingerprint", "starts_at", name="uq_alerts_fingerprint_starts_at"),
    )
    op.create_index("ix_alerts_alertname", "alerts", ["alertname"])
    op.create_table(
        "incidents",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("alert_id", BIGID, sa.ForeignKey("alerts.id"), nullable=False, unique=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("alertname", sa.String(255), nullable=False),
        sa.Column("procedure", sa.String(255), nullable=True),
        sa.Column("target", sa.String(512), nullable=True),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        ts("alert_starts_at", False),
        ts("opened_at", False),
        ts("updated_at", False),
        ts("awaiting_approval_at"),
        ts("approved_at"),
        sa.Column("approved_by", sa.String(255), nullable=True),
        ts("remediating_at"),
        ts("resolved_at"),
        ts("failed_at"),
        ts("escalated_at"),
        ts("alert_resolved_at"),
    )
    for col in ("fingerprint", "alertname", "procedure", "state", "opened_at"):
        op.create_index(f"ix_incidents_{col}", "incidents", [col])
    op.create_table(
        "attempts",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("incident_id", BIGID, sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("procedure", sa.String(255), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("replica", sa.String(255), nullable=False),
        ts("created_at", False),
        ts("started_at"),
        ts("finished_at"),
        ts("heartbeat_at"),
        sa.Column("duration_seconds", sa.Float, nullable=True),
        sa.Column("steps", JSONType, nullable=False),
        sa.Column("rollback_steps", JSONType, nullable=False),
        sa.Column("verification", sa.String(16), nullable=True),
        sa.Column("verification_detail", sa.Text, nullable=False),
    )
    for col in ("incident_id", "procedure", "target", "state", "created_at"):
        op.create_index(f"ix_attempts_{col}", "attempts", [col])
    op.create_table(
        "audit_log",
        sa.Column("id", BIGID, primary_key=True),
        ts("at", False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("incident_id", BIGID, sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("detail", JSONType, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_incident_id", "audit_log", ["incident_id"])
    op.create_table(
        "control_flags",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(255), nullable=False),
        ts("updated_at", False),
        sa.Column("updated_by", sa.String(255), nullable=False),
    )


def downgrade() -> None:
    for table in ("control_flags", "audit_log", "attempts", "incidents", "alerts", "notifications"):
        op.drop_table(table)
