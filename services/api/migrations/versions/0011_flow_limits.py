"""flow limits: a tenant's limits per flow (receiver); a deleted limit keeps its row so versions only grow

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 09:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flow_limits",
        sa.Column("tenant_id", sa.String(200), primary_key=True),
        sa.Column("flow_key", sa.String(200), primary_key=True),
        sa.Column("max_concurrency", sa.Integer, nullable=False),
        sa.Column("max_per_second", sa.Float, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("updated_at", sa.TIMESTAMP(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.TIMESTAMP(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("flow_limits")
