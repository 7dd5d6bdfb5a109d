"""one writer per table: schedule statistics (the recorder's) and run-now requests (the API's)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 20:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule_stats",
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("run_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_version", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("schedule_id"),
    )
    op.execute(
        """
        INSERT INTO schedule_stats (schedule_id, run_count, last_run_at, completed_version)
        SELECT id, run_count, last_run_at, CASE WHEN status = 'completed' THEN version END
        FROM schedules
        WHERE run_count > 0 OR last_run_at IS NOT NULL OR status = 'completed'
        """
    )
    # Completion is now the recorder's fact (completed_version); the API's row says what the tenant asked for.
    op.execute("UPDATE schedules SET status = 'active' WHERE status = 'completed'")
    op.drop_column("schedules", "run_count")
    op.drop_column("schedules", "last_run_at")
    op.create_table(
        "run_requests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=200), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_requests_schedule_requested_at", "run_requests", ["schedule_id", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_run_requests_schedule_requested_at", table_name="run_requests")
    op.drop_table("run_requests")
    op.add_column("schedules", sa.Column("last_run_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("schedules", sa.Column("run_count", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.execute(
        """
        UPDATE schedules AS s
        SET run_count = st.run_count, last_run_at = st.last_run_at,
            status = CASE WHEN s.status = 'active' AND st.completed_version = s.version
                          THEN 'completed' ELSE s.status END
        FROM schedule_stats AS st
        WHERE st.schedule_id = s.id
        """
    )
    op.drop_table("schedule_stats")
