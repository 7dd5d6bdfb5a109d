"""exclusion calendars, and the calendars each schedule names

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 02:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.TIMESTAMP(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calendars",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("exclude_dates", JSONB, nullable=False),
        sa.Column("exclude_weekdays", JSONB, nullable=False),
        sa.Column("exclude_ranges", JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_index("ix_calendars_tenant_id_id", "calendars", ["tenant_id", "id"])
    op.add_column(
        "schedules",
        sa.Column("calendar_ids", ARRAY(sa.Uuid), nullable=False, server_default=sa.text("'{}'::uuid[]")),
    )
    # "Which schedules name this calendar": for a calendar's delete (409 while named) and its changes.
    op.create_index("ix_schedules_calendar_ids", "schedules", ["calendar_ids"], postgresql_using="gin")


def downgrade() -> None:
    op.drop_index("ix_schedules_calendar_ids", table_name="schedules")
    op.drop_column("schedules", "calendar_ids")
    op.drop_index("ix_calendars_tenant_id_id", table_name="calendars")
    op.drop_table("calendars")
