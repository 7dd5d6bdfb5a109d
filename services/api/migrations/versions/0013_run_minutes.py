"""run figures per tenant and minute, kept by triggers, so /api/stats reads minutes instead of runs

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 06:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in history_counts (0007): each statement adds to the rows of its connection's slot, so two recorders writing
# runs of one tenant and minute rarely wait on each other; a reader sums the slots.
_SLOTS = 8

# A lag bucket b > 0 holds first attempts that started (0.5 * 1.05^(b-1), 0.5 * 1.05^b] ms after their planned
# time; bucket 0 holds those that started within 0.5 ms (or early). 5% wide: a percentile read from them is within
# 2.5% of the exact one (services/api/db/stats_repo.py).
_BUCKET = """
CREATE FUNCTION chime_lag_bucket(ms double precision) RETURNS smallint LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN ms <= 0.5 THEN 0 ELSE least(1000, 1 + floor(ln(ms / 0.5) / ln(1.05)))::smallint END
$$;
"""

_MINUTE = "date_trunc('minute', {col}, 'UTC')"

_RUN_DELTAS = f"""
  SELECT tenant_id, {_MINUTE.format(col="scheduled_for")} AS minute,
         CASE WHEN status = 'succeeded' THEN {{sign}} ELSE 0 END AS ok,
         CASE WHEN status <> 'succeeded' THEN {{sign}} ELSE 0 END AS bad
  FROM {{rows}} WHERE status IN ('succeeded', 'failed', 'dead_lettered')"""  # noqa: S608 - fixed text
_RUN_UPSERT = f"""
  INSERT INTO run_minutes AS m (tenant_id, minute, slot, succeeded, failed)
  SELECT d.tenant_id, d.minute, pg_backend_pid() % {_SLOTS}, sum(d.ok), sum(d.bad) FROM ({{deltas}}) AS d
  GROUP BY 1, 2
  HAVING sum(d.ok) <> 0 OR sum(d.bad) <> 0
  ORDER BY 1, 2
  ON CONFLICT (tenant_id, minute, slot)
  DO UPDATE SET succeeded = m.succeeded + excluded.succeeded, failed = m.failed + excluded.failed;
"""  # noqa: S608 - fixed text; the only interpolation is the slot count

# The run's row is there: the recorder writes a batch's runs before its attempts.
_LAG_DELTAS = f"""
  SELECT r.tenant_id, {_MINUTE.format(col="r.scheduled_for")} AS minute,
         chime_lag_bucket(extract(epoch FROM a.started_at - coalesce(r.planned_for, r.scheduled_for)) * 1000) AS b,
         {{sign}} AS n
  FROM {{rows}} AS a JOIN runs AS r ON r.id = a.run_id
  WHERE a.attempt = 1 AND a.started_at IS NOT NULL"""  # noqa: S608 - fixed text
_LAG_UPSERT = f"""
  INSERT INTO run_minute_lags AS l (tenant_id, minute, bucket, slot, n)
  SELECT d.tenant_id, d.minute, d.b, pg_backend_pid() % {_SLOTS}, sum(d.n) FROM ({{deltas}}) AS d
  GROUP BY 1, 2, 3
  HAVING sum(d.n) <> 0
  ORDER BY 1, 2, 3
  ON CONFLICT (tenant_id, minute, bucket, slot) DO UPDATE SET n = l.n + excluded.n;
"""  # noqa: S608 - fixed text; the only interpolation is the slot count


def _function(name: str, upsert: str, deltas: str) -> str:
    def statement(*sources: tuple[str, str]) -> str:
        return upsert.format(deltas=" UNION ALL ".join(deltas.format(rows=r, sign=s) for r, s in sources))

    # Deletes are the retention prune's, which drops the minutes past retention itself (``Recorder.prune``).
    return f"""
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN {statement(("new_rows", "1"))}
  ELSE {statement(("new_rows", "1"), ("old_rows", "-1"))}
  END IF;
  RETURN NULL;
END $$;
"""


def _triggers(table: str, function: str) -> list[str]:
    transitions = {"insert": "NEW TABLE AS new_rows", "update": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}
    return [
        f"CREATE TRIGGER {table}_minutes_{event} AFTER {event.upper()} ON {table} REFERENCING {tables} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {function}()"
        for event, tables in transitions.items()
    ]


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE run_minutes (
            tenant_id text NOT NULL,
            minute timestamptz NOT NULL,
            slot smallint NOT NULL,
            succeeded bigint NOT NULL,
            failed bigint NOT NULL,
            PRIMARY KEY (tenant_id, minute, slot)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE run_minute_lags (
            tenant_id text NOT NULL,
            minute timestamptz NOT NULL,
            bucket smallint NOT NULL,
            slot smallint NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (tenant_id, minute, bucket, slot)
        )
        """
    )
    op.execute("CREATE INDEX ix_run_minutes_minute ON run_minutes (minute)")
    op.execute("CREATE INDEX ix_run_minute_lags_minute ON run_minute_lags (minute)")
    op.execute(_BUCKET)
    # The last day (the longest window /api/stats answers for), counted once, in the transaction that installs the
    # triggers.
    op.execute("LOCK TABLE runs, run_attempts IN SHARE MODE")
    since = "now() - interval '1 day 1 minute'"
    slot = f"pg_backend_pid() % {_SLOTS}"
    runs_so_far = _RUN_DELTAS.format(rows="runs", sign="1") + f" AND scheduled_for >= {since}"
    lags_so_far = _LAG_DELTAS.format(rows="run_attempts", sign="1") + f" AND r.scheduled_for >= {since}"
    op.execute(_RUN_UPSERT.format(deltas=runs_so_far).replace(slot, "0"))
    op.execute(_LAG_UPSERT.format(deltas=lags_so_far).replace(slot, "0"))
    op.execute(_function("chime_run_minutes", _RUN_UPSERT, _RUN_DELTAS))
    op.execute(_function("chime_run_minute_lags", _LAG_UPSERT, _LAG_DELTAS))
    for statement in _triggers("runs", "chime_run_minutes") + _triggers("run_attempts", "chime_run_minute_lags"):
        op.execute(statement)


def downgrade() -> None:
    for table in ("runs", "run_attempts"):
        for event in ("insert", "update"):
            op.execute(f"DROP TRIGGER {table}_minutes_{event} ON {table}")
    op.execute("DROP FUNCTION chime_run_minutes()")
    op.execute("DROP FUNCTION chime_run_minute_lags()")
    op.execute("DROP FUNCTION chime_lag_bucket(double precision)")
    op.execute("DROP TABLE run_minute_lags")
    op.execute("DROP TABLE run_minutes")
