"""Incident intelligence: correlation groups and per-incident signature, findings and impact.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from vigil.remediator.models import JSONType, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def ts(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "incident_groups",
        sa.Column("id", BIGID, primary_key=True),
        ts("opened_at", False),
        ts("updated_at", False),
        ts("first_alert_at", False),
        ts("last_alert_at", False),
        sa.Column("services", JSONType, nullable=False),
        sa.Column("shared", JSONType, nullable=False),
        sa.Column("root_incident_id", sa.BigInteger, nullable=True),
        sa.Column("root_alertname", sa.String(255), nullable=True),
        sa.Column("ranking", JSONType, nullable=False),
        ts("ranked_at"),
    )
    op.create_index("ix_incident_groups_opened_at", "incident_groups", ["opened_at"])
    op.create_index("ix_incident_groups_last_alert_at", "incident_groups", ["last_alert_at"])
    op.create_table(
        "incident_intel",
        sa.Column("incident_id", BIGID, sa.ForeignKey("incidents.id"), primary_key=True),
        sa.Column("group_id", BIGID, sa.ForeignKey("incident_groups.id"), nullable=False),
        sa.Column("service", sa.String(255), nullable=False),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("signature", sa.String(600), nullable=False),
        sa.Column("findings", JSONType, nullable=False),
        sa.Column("impact", JSONType, nullable=True),
        ts("impact_at"),
    )
    op.create_index("ix_incident_intel_group_id", "incident_intel", ["group_id"])
    op.create_index("ix_incident_intel_signature", "incident_intel", ["signature"])


def downgrade() -> None:
    op.drop_table("incident_intel")
    op.drop_table("incident_groups")
