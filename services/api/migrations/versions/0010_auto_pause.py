"""auto-pause: the schedule's threshold and reason, and the recorder's requests the API applies

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 05:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("schedules", sa.Column("auto_pause_after_failures", sa.Integer, nullable=True))
    op.add_column("schedules", sa.Column("paused_reason", sa.Text, nullable=True))
    op.add_column("schedules", sa.Column("auto_pause_base", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.add_column("schedules", sa.Column("auto_pause_base_at", sa.TIMESTAMP(timezone=True), nullable=True))
    op.create_table(
        "auto_pause_requests",
        sa.Column("schedule_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("requested_at", sa.TIMESTAMP(timezone=True), nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.drop_table("auto_pause_requests")
    op.drop_column("schedules", "auto_pause_base_at")
    op.drop_column("schedules", "auto_pause_base")
    op.drop_column("schedules", "paused_reason")
    op.drop_column("schedules", "auto_pause_after_failures")
