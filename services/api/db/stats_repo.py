"""Figures over a tenant's recent run history: deliveries, failures and lag per minute, and per schedule."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Figures per nominal minute come from ``run_minutes`` and ``run_minute_lags``, which triggers on ``runs`` and
# ``run_attempts`` keep (migration 0013): reading them costs the minutes of the window, not its runs (an hour of
# 100 fires a second took a second to read from the runs themselves). Lag is the first attempt's start against the
# planned time (the nominal time plus the schedule's jitter), as `chime_executor_call_lag_seconds` counts it, kept as
# counts in 5%-wide buckets.
_SERIES = text(
    """
    SELECT minute, sum(succeeded) AS succeeded, sum(failed) AS failed
    FROM run_minutes
    WHERE tenant_id = :tenant AND minute >= date_trunc('minute', CAST(:since AS timestamptz), 'UTC')
    GROUP BY minute
    HAVING sum(succeeded) > 0 OR sum(failed) > 0
    ORDER BY minute
    """
)
_LAGS = text(
    """
    SELECT minute, bucket, sum(n) AS n
    FROM run_minute_lags
    WHERE tenant_id = :tenant AND minute >= date_trunc('minute', CAST(:since AS timestamptz), 'UTC')
    GROUP BY minute, bucket
    HAVING sum(n) > 0
    """
)
_BUCKET_BASE_MS = 0.5
_BUCKET_GROWTH = 1.05
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


def lag_percentile(counts: dict[int, int], q: float) -> float | None:
    """The ``q`` quantile of lags kept as bucket counts: the geometric middle of the bucket it falls in (0 for the
    first bucket, on time), within 2.5% of the exact figure."""
    total = sum(counts.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(counts):
        seen += counts[bucket]
        if seen >= rank:
            if bucket == 0:
                return 0.0
            middle: float = _BUCKET_BASE_MS * _BUCKET_GROWTH ** (bucket - 0.5)
            return round(middle, 3)
    return None


class StatsRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def series(self, tenant: str, since: datetime) -> list[MinuteFigures]:
        params = {"tenant": tenant, "since": since}
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_SERIES, params)).all()
            lag_rows = (await conn.execute(_LAGS, params)).all()
        lags: dict[datetime, dict[int, int]] = {}
        for r in lag_rows:
            lags.setdefault(r.minute, {})[r.bucket] = int(r.n)
        figures = []
        for r in rows:
            counts = lags.get(r.minute, {})
            p50, p99 = lag_percentile(counts, 0.5), lag_percentile(counts, 0.99)
            figures.append(MinuteFigures(r.minute, int(r.succeeded), int(r.failed), p50, p99))
        return figures

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
