"""per-tenant rate buckets shared by every API process

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Take up to ``want`` whole tokens from the bucket ``k`` (refilled at ``rate`` a second, holding at most ``burst``);
# returns how many it took. The row lock serializes takers of one key; other keys do not wait.
_TAKE = """
CREATE OR REPLACE FUNCTION chime_take_tokens(k text, rate float8, burst float8, want float8)
RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := clock_timestamp();
    avail float8;
    took float8;
BEGIN
    INSERT INTO rate_buckets (key, tokens, updated_at) VALUES (k, burst, at) ON CONFLICT (key) DO NOTHING;
    SELECT least(burst, tokens + greatest(0, extract(epoch FROM at - updated_at)) * rate)
      INTO avail FROM rate_buckets WHERE key = k FOR UPDATE;
    took := greatest(0, least(want, floor(avail)));
    UPDATE rate_buckets SET tokens = avail - took, updated_at = at WHERE key = k;
    RETURN took;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "rate_buckets",
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.execute(_TAKE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS chime_take_tokens(text, float8, float8, float8)")
    op.drop_table("rate_buckets")
