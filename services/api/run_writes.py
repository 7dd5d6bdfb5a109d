"""The recorder's set-based writes: one fixed statement per kind of change, fed with arrays.

Each statement is the same text whatever the batch size (``unnest`` over array parameters), so asyncpg prepares
it once per connection and SQLAlchemy compiles nothing per batch. Multi-row ``VALUES`` built per batch were
half of the recorder's CPU at 500 events/s, spent compiling a new statement for every batch size.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from services.api.run_batch import RANK, RunBatch
from services.api.run_health import Health
from shared.db.engine import driver_connection
from shared.events.runs import Trigger

_INSERT_RUNS = """
INSERT INTO runs (id, schedule_id, tenant_id, scheduled_for, planned_for, status, trigger)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::text[])
ON CONFLICT DO NOTHING
RETURNING id, schedule_id, trigger, scheduled_for, status
"""

# Only schedules the API knows get statistics (the join); runs of others are still recorded.
_COUNT_RUNS = """
INSERT INTO schedule_stats AS st (schedule_id, run_count, last_run_at)
SELECT v.sid, v.n, v.last
FROM unnest($1::uuid[], $2::int[], $3::timestamptz[]) AS v(sid, n, last)
JOIN schedules AS s ON s.id = v.sid
ON CONFLICT (schedule_id) DO UPDATE
SET run_count = st.run_count + excluded.run_count,
    last_run_at = greatest(coalesce(st.last_run_at, excluded.last_run_at), excluded.last_run_at)
"""

_RANK_SQL = "CASE r.status " + " ".join(f"WHEN '{s.value}' THEN {n}" for s, n in RANK.items()) + " ELSE 0 END"

_MOVE_STATUSES = f"""
UPDATE runs AS r
SET status = v.status, updated_at = now(), finished_at = v.fin
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::timestamptz[]) AS v(rid, status, rank, fin)
WHERE r.id = v.rid AND {_RANK_SQL} < v.rank
RETURNING r.id, r.schedule_id, v.status
"""  # noqa: S608 - the only interpolation is the fixed status-to-rank table

# Health moves only with runs that reached an end in this statement (a repeated event moves nothing), so a
# redelivered outcome cannot lengthen a failure streak. ``reset``: the batch saw a success, and ``fails`` counts the
# failures after the last one; otherwise ``fails`` adds to the streak.
_STATS_ROWS = """
INSERT INTO schedule_stats (schedule_id)
SELECT v.sid FROM unnest($1::uuid[]) AS v(sid) JOIN schedules AS s ON s.id = v.sid
ON CONFLICT DO NOTHING
"""
# A streak that reaches the schedule's auto_pause_after_failures asks the API to pause it (the API owns
# ``schedules``). Failures count from the last resume unless a success since then restarted the streak (the same
# rule as ``services.api.auto_pause.failures_toward_pause``, which the API checks again when it applies the request).
# A streak that reaches alert_after_failures notifies schedule.failing; a success that ends such a streak,
# schedule.recovered (``before`` reads the streaks as they were: every part of one statement sees one snapshot).
_MOVE_HEALTH = """
WITH before AS (
  SELECT st.schedule_id, st.consecutive_failures AS streak
  FROM schedule_stats AS st WHERE st.schedule_id = ANY($1::uuid[])
), moved AS (
  UPDATE schedule_stats AS st
  SET consecutive_failures = CASE WHEN v.reset THEN v.fails ELSE st.consecutive_failures + v.fails END,
      last_success_at = greatest(st.last_success_at, v.ok_at),
      last_failure_at = greatest(st.last_failure_at, v.failed_at)
  FROM unnest($1::uuid[], $2::int[], $3::bool[], $4::timestamptz[], $5::timestamptz[])
    AS v(sid, fails, reset, ok_at, failed_at)
  WHERE st.schedule_id = v.sid
  RETURNING st.schedule_id, st.consecutive_failures AS streak, st.last_success_at AS last_ok,
            st.last_failure_at AS last_failed, v.reset
), joined AS (
  SELECT s.id, s.tenant_id, s.name, s.status, s.auto_pause_after_failures, s.auto_pause_base, s.auto_pause_base_at,
         s.alert_after_failures AS alert, m.streak, m.last_ok, m.last_failed, m.reset,
         coalesce(b.streak, 0) AS before
  FROM moved AS m JOIN schedules AS s ON s.id = m.schedule_id LEFT JOIN before AS b ON b.schedule_id = m.schedule_id
), counted AS (
  SELECT id, tenant_id, auto_pause_after_failures AS threshold,
         streak - CASE WHEN auto_pause_base_at IS NOT NULL AND (last_ok IS NULL OR last_ok < auto_pause_base_at)
                       THEN least(auto_pause_base, streak) ELSE 0 END AS failures
  FROM joined
  WHERE auto_pause_after_failures IS NOT NULL AND status = 'active'
), paused AS (
  INSERT INTO auto_pause_requests (schedule_id, tenant_id, failures)
  SELECT id, tenant_id, failures FROM counted WHERE failures >= threshold
  ON CONFLICT (schedule_id) DO UPDATE SET failures = excluded.failures, requested_at = excluded.requested_at
  RETURNING 1
), alerts AS (
  SELECT id, tenant_id, 'schedule.failing' AS kind,
         jsonb_build_object('schedule_id', id, 'tenant_id', tenant_id, 'name', name, 'consecutive_failures', streak,
                            'alert_after_failures', alert, 'last_failure_at', last_failed) AS data
  FROM joined WHERE alert IS NOT NULL AND before < alert AND streak >= alert
  UNION ALL
  SELECT id, tenant_id, 'schedule.recovered',
         jsonb_build_object('schedule_id', id, 'tenant_id', tenant_id, 'name', name, 'failures_before', before,
                            'recovered_at', last_ok)
  FROM joined WHERE alert IS NOT NULL AND reset AND before >= alert
)
INSERT INTO notifications (id, tenant_id, endpoint_id, event_type, subject, data)
SELECT gen_random_uuid(), a.tenant_id, e.id, a.kind, a.id::text, a.data
FROM alerts AS a
JOIN notification_endpoints AS e ON e.tenant_id = a.tenant_id AND e.events @> jsonb_build_array(a.kind)
"""
# Run events a tenant subscribed to, one notification per endpoint. The id follows from the endpoint and the event,
# so the same event recorded twice (a redelivery) makes no second notification.
_NOTIFY_EVENTS = """
INSERT INTO notifications (id, tenant_id, endpoint_id, event_type, subject, data)
SELECT md5(e.id::text || '/' || v.eid)::uuid, v.tenant, e.id, v.kind, v.subject, v.data::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS v(tenant, kind, subject, eid, data)
JOIN notification_endpoints AS e ON e.tenant_id = v.tenant AND e.events @> jsonb_build_array(v.kind)
ON CONFLICT (id) DO NOTHING
"""
_COUNT_SKIPS = """
INSERT INTO schedule_stats AS st (schedule_id, skipped_total, last_skipped_at, last_skip_reason)
SELECT s.id, $2, $3, $4 FROM schedules AS s WHERE s.id = $1
ON CONFLICT (schedule_id) DO UPDATE
SET skipped_total = st.skipped_total + excluded.skipped_total,
    last_skip_reason = CASE
      WHEN st.last_skipped_at IS NULL OR excluded.last_skipped_at >= st.last_skipped_at THEN excluded.last_skip_reason
      ELSE st.last_skip_reason END,
    last_skipped_at = greatest(st.last_skipped_at, excluded.last_skipped_at)
"""

_UPSERT_ATTEMPTS = """
INSERT INTO run_attempts
  (run_id, attempt, worker, started_at, finished_at, http_status, duration_ms, error, response_excerpt)
SELECT * FROM unnest(
  $1::uuid[], $2::int[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[], $7::int[], $8::text[], $9::text[]
)
ON CONFLICT (run_id, attempt) DO UPDATE SET
  worker = excluded.worker, started_at = excluded.started_at, finished_at = excluded.finished_at,
  http_status = excluded.http_status, duration_ms = excluded.duration_ms, error = excluded.error,
  response_excerpt = excluded.response_excerpt
"""

_RUN_COLUMNS = ("id", "schedule_id", "tenant_id", "scheduled_for", "planned_for", "status", "trigger")
_ATTEMPT_COLUMNS = (
    "run_id",
    "attempt",
    "worker",
    "started_at",
    "finished_at",
    "http_status",
    "duration_ms",
    "error",
    "response_excerpt",
)


def _columns(rows: list[dict[str, Any]], names: tuple[str, ...]) -> list[list[Any]]:
    return [[row[name] for row in rows] for name in names]


async def write_batch(conn: AsyncConnection, batch: RunBatch) -> None:
    """Apply ``batch`` inside the connection's transaction."""
    pg = await driver_connection(conn)
    health = Health()
    if batch.runs:
        created = await pg.fetch(_INSERT_RUNS, *_columns(list(batch.runs.values()), _RUN_COLUMNS))
        counts: dict[uuid.UUID, tuple[int, datetime]] = {}
        for row in created:
            change = batch.statuses.get(row["id"])
            if change is not None and row["status"] == change.status.value:
                health.ended(row["schedule_id"], change.status, change.finished_at)
            if row["trigger"] == Trigger.SCHEDULE.value:
                n, last = counts.get(row["schedule_id"], (0, row["scheduled_for"]))
                counts[row["schedule_id"]] = (n + 1, max(last, row["scheduled_for"]))
        if counts:
            ordered = sorted(counts.items())  # a fixed lock order across concurrent recorders
            await pg.execute(
                _COUNT_RUNS, [sid for sid, _ in ordered], [n for _, (n, _) in ordered], [t for _, (_, t) in ordered]
            )
    if batch.statuses:
        moves = list(batch.statuses.items())
        moved = await pg.fetch(
            _MOVE_STATUSES,
            [rid for rid, _ in moves],
            [c.status.value for _, c in moves],
            [c.rank for _, c in moves],
            [c.finished_at for _, c in moves],
        )
        for row in moved:
            change = batch.statuses[row["id"]]
            health.ended(row["schedule_id"], change.status, change.finished_at)
    if batch.attempts:
        await pg.execute(_UPSERT_ATTEMPTS, *_columns(list(batch.attempts.values()), _ATTEMPT_COLUMNS))
    if health:
        sids, fails, resets, ok_at, failed_at = health.columns()
        await pg.execute(_STATS_ROWS, sids)
        await pg.execute(_MOVE_HEALTH, sids, fails, resets, ok_at, failed_at)


async def count_skip(
    conn: AsyncConnection, schedule_id: uuid.UUID, count: int, last_nominal: datetime, reason: str
) -> None:
    """Add ``count`` skipped fires to the schedule's health, the last of them at ``last_nominal``."""
    pg = await driver_connection(conn)
    await pg.execute(_COUNT_SKIPS, schedule_id, count, last_nominal, reason)


async def notify_events(conn: AsyncConnection, notices: list[tuple[str, str, str, str, str]]) -> None:
    """Make the notifications for (tenant, type, subject, event id, data JSON) of run events, per subscribed
    endpoint."""
    pg = await driver_connection(conn)
    await pg.execute(_NOTIFY_EVENTS, *(list(column) for column in zip(*notices, strict=True)))
