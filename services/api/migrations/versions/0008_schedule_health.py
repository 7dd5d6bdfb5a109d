"""per-schedule health: failure streak, last success and failure, skips

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.add_column("schedule_stats", sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"))
    op.add_column("schedule_stats", sa.Column("last_success_at", _TS))
    op.add_column("schedule_stats", sa.Column("last_failure_at", _TS))
    op.add_column("schedule_stats", sa.Column("skipped_total", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("schedule_stats", sa.Column("last_skipped_at", _TS))
    op.add_column("schedule_stats", sa.Column("last_skip_reason", sa.Text))
    # ``?failing=true`` looks for the few schedules with a streak, not through all of them.
    op.create_index(
        "ix_schedule_stats_failing",
        "schedule_stats",
        ["schedule_id"],
        postgresql_where=sa.text("consecutive_failures > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_schedule_stats_failing", table_name="schedule_stats")
    for column in (
        "last_skip_reason",
        "last_skipped_at",
        "skipped_total",
        "last_failure_at",
        "last_success_at",
        "consecutive_failures",
    ):
        op.drop_column("schedule_stats", column)
