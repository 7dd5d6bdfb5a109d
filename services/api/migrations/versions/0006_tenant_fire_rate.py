"""the tenant's planned fire rate kept in its row

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 22:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("planned_fire_rate", sa.Float(), server_default=sa.text("0"), nullable=False))
    op.execute(
        """
        UPDATE tenants AS t
        SET planned_fire_rate = coalesce(
            (SELECT sum(s.fire_rate) FROM schedules AS s WHERE s.tenant_id = t.id AND s.status = 'active'), 0)
        """
    )


def downgrade() -> None:
    op.drop_column("tenants", "planned_fire_rate")
