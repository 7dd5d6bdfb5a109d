"""run history figures kept as counts by triggers, not counted at every scrape

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 23:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each statement adds its deltas to the row of its connection's slot, so concurrent writers rarely wait on one
# row; a reader sums the slots (a few dozen rows, however long the history).
_SLOTS = 16

_UPSERT = f"""
  INSERT INTO history_counts AS c (name, slot, value)
  SELECT k.name, pg_backend_pid() % {_SLOTS}, sum(k.v) FROM ({{deltas}}) AS k(name, v)
  GROUP BY k.name
  HAVING sum(k.v) <> 0
  ORDER BY 1
  ON CONFLICT (name, slot) DO UPDATE SET value = c.value + excluded.value;
"""  # noqa: S608 - fixed text; the only interpolation is the slot count

# A delta per row: +1 for what a statement wrote (new_rows), -1 for what it replaced or removed (old_rows).
_RUN_DELTAS = "SELECT 'runs:' || status, {sign}::double precision FROM {rows}"
_ATTEMPT_DELTAS = """SELECT v.name, v.value FROM {rows} AS a CROSS JOIN LATERAL (VALUES
    ('attempts:finished', {sign}::double precision),
    ('attempts:succeeded', CASE WHEN a.http_status BETWEEN 200 AND 299 THEN {sign} ELSE 0 END),
    ('attempts:duration_ms', {sign} * coalesce(a.duration_ms, 0))
  ) AS v(name, value) WHERE a.finished_at IS NOT NULL"""


def _function(name: str, deltas: str) -> str:
    def upsert(*sources: tuple[str, str]) -> str:
        return _UPSERT.format(deltas=" UNION ALL ".join(deltas.format(rows=r, sign=s) for r, s in sources))

    # Each branch names only the transition tables its trigger declares (a trigger may have one event only).
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {upsert(("new_rows", "1"))}
  ELSIF TG_OP = 'DELETE' THEN {upsert(("old_rows", "-1"))}
  ELSE {upsert(("new_rows", "1"), ("old_rows", "-1"))}
  END IF;
  RETURN NULL;
END $$;
"""


def _triggers(table: str, function: str) -> list[str]:
    """One statement per trigger: a trigger with transition tables may have one event only."""
    transitions = {
        "insert": "NEW TABLE AS new_rows",
        "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "delete": "OLD TABLE AS old_rows",
    }
    return [
        f"CREATE TRIGGER {table}_count_{event} AFTER {event.upper()} ON {table} REFERENCING {tables} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        for event, tables in transitions.items()
    ]


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE history_counts (
            name text NOT NULL,
            slot smallint NOT NULL,
            value double precision NOT NULL,
            PRIMARY KEY (name, slot)
        )
        """
    )
    # The history so far, counted once, in the same transaction that installs the triggers.
    op.execute("LOCK TABLE runs, run_attempts IN SHARE MODE")
    op.execute(
        """
        INSERT INTO history_counts (name, slot, value)
        SELECT 'runs:' || status, 0, count(*) FROM runs GROUP BY status
        UNION ALL
        SELECT 'attempts:finished', 0, count(*) FROM run_attempts WHERE finished_at IS NOT NULL
        UNION ALL
        SELECT 'attempts:succeeded', 0, count(*) FROM run_attempts
          WHERE finished_at IS NOT NULL AND http_status BETWEEN 200 AND 299
        UNION ALL
        SELECT 'attempts:duration_ms', 0, coalesce(sum(duration_ms), 0) FROM run_attempts WHERE finished_at IS NOT NULL
        """
    )
    op.execute(_function("chime_count_runs", _RUN_DELTAS))
    op.execute(_function("chime_count_attempts", _ATTEMPT_DELTAS))
    for statement in _triggers("runs", "chime_count_runs") + _triggers("run_attempts", "chime_count_attempts"):
        op.execute(statement)


def downgrade() -> None:
    for table in ("runs", "run_attempts"):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER {table}_count_{event} ON {table}")
    op.execute("DROP FUNCTION chime_count_runs()")
    op.execute("DROP FUNCTION chime_count_attempts()")
    op.execute("DROP TABLE history_counts")
