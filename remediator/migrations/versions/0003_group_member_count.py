"""incident_groups.member_count: a group's size without counting its members on every alert.

Correlating an alert looked for live groups with room by counting the members of every group
in the time window: in a storm (thousands of alerts starting together) that count grew with
every alert, so correlation fell behind and took the CPU the webhook needs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("incident_groups",
                  sa.Column("member_count", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE incident_groups SET member_count = (SELECT count(*) FROM incident_intel "
               "WHERE incident_intel.group_id = incident_groups.id)")


def downgrade() -> None:
    op.drop_column("incident_groups", "member_count")
