"""Figures over a tenant's recent run history: deliveries, failures and lag per minute, and per schedule."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Runs are bucketed by their nominal minute; the window is on ``created_at`` (indexed), which the recorder sets when
# the run is announced, a few seconds before its nominal time at most. Lag is the first attempt's start against the
# planned time (the nominal time plus the schedule's jitter), as `chime_executor_call_lag_seconds` counts it.
_SERIES = text(
    """
    SELECT date_trunc('minute', r.scheduled_for) AS minute,
           count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE r.status IN ('failed', 'dead_lettered')) AS failed,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY lag.ms) AS lag_p50_ms,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY lag.ms) AS lag_p99_ms
    FROM runs r
    LEFT JOIN LATERAL (
        SELECT extract(epoch FROM a.started_at - coalesce(r.planned_for, r.scheduled_for)) * 1000 AS ms
        FROM run_attempts a WHERE a.run_id = r.id AND a.attempt = 1
    ) lag ON true
    WHERE r.tenant_id = :tenant AND r.created_at >= :since AND r.scheduled_for >= :since
      AND r.status IN ('succeeded', 'failed', 'dead_lettered')
    GROUP BY 1 ORDER BY 1
    """
)
_BY_SCHEDULE = text(
    """
    SELECT r.schedule_id,
           count(*) FILTER (WHERE r.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE r.status IN ('failed', 'dead_lettered')) AS failed
    FROM runs r
    WHERE r.tenant_id = :tenant AND r.schedule_id = ANY(:ids) AND r.scheduled_for >= :since
      AND r.status IN ('succeeded', 'failed', 'dead_lettered')
    GROUP BY 1
    """
)
_DEAD = text("SELECT count(*) FROM dlq_entries WHERE tenant_id = :tenant AND status = 'dead'")


@dataclass(frozen=True, slots=True)
class MinuteFigures:
    minute: datetime
    succeeded: int
    failed: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class ScheduleFigures:
    schedule_id: uuid.UUID
    succeeded: int
    failed: int


class StatsRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def series(self, tenant: str, since: datetime) -> list[MinuteFigures]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_SERIES, {"tenant": tenant, "since": since})).all()
        return [MinuteFigures(r.minute, r.succeeded, r.failed, r.lag_p50_ms, r.lag_p99_ms) for r in rows]

    async def by_schedule(
        self, tenant: str, schedule_ids: Sequence[uuid.UUID], since: datetime
    ) -> list[ScheduleFigures]:
        if not schedule_ids:
            return []
        params = {"tenant": tenant, "ids": list(schedule_ids), "since": since}
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_BY_SCHEDULE, params)).all()
        return [ScheduleFigures(r.schedule_id, r.succeeded, r.failed) for r in rows]

    async def dead_letters(self, tenant: str) -> int:
        async with self._engine.connect() as conn:
            return int((await conn.execute(_DEAD, {"tenant": tenant})).scalar_one())
