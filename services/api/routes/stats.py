"""``/api/stats``: the tenant's recent deliveries, failures and lag, its dead letters, and the consumers' lag."""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from services.api.auth import ADMIN, ReadRuns
from services.api.deps import Deps
from services.api.errors import MissingScope
from shared.timefmt import utcnow
from shared.types import Instant

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/stats", tags=["stats"])


class MinuteOut(BaseModel):
    minute: Instant = Field(description="Start of the nominal minute the runs were due in.")
    succeeded: int
    failed: int = Field(description="Runs that ended failed or dead-lettered.")
    lag_p50_ms: float | None = Field(
        description="Median delay of the first attempt's start after the planned time, within 2.5% (lags are kept"
        " per minute in 5%-wide buckets); 0 when it started within 0.5 ms."
    )
    lag_p99_ms: float | None = Field(description="The 99th percentile of the same delay, within 2.5%.")


class ScheduleFiguresOut(BaseModel):
    schedule_id: uuid.UUID
    succeeded: int
    failed: int


class StatsOut(BaseModel):
    window_minutes: int
    series: list[MinuteOut] = Field(description="One item per minute that had finished runs, oldest first.")
    schedules: list[ScheduleFiguresOut] = Field(description="For each schedule_id asked for that had runs.")
    dead_letters: int = Field(description="Dead-letter entries waiting (status dead).")
    consumer_lag: dict[str, int] | None = Field(
        description="Records each consumer group has still to handle (with consumer_lag=true, which needs the admin"
        " scope: the figure is the installation's, not the tenant's); null when not asked for or the brokers did"
        " not answer."
    )


@router.get("", response_model=StatsOut)
async def get_stats(
    principal: ReadRuns,
    deps: Deps,
    window_minutes: Annotated[int, Query(ge=1, le=1440)] = 60,
    schedule_id: Annotated[list[uuid.UUID] | None, Query(max_length=200)] = None,
    consumer_lag: Annotated[
        bool,
        Query(
            description="Also read each consumer group's lag from the brokers (cached for 5 s); needs the admin scope"
        ),
    ] = False,
) -> StatsOut:
    """Finished runs of the last ``window_minutes``, per nominal minute and per schedule asked for."""
    if consumer_lag and ADMIN not in principal.scopes:
        # Consumer groups serve every tenant: their lag tells one tenant how busy the installation is.
        raise MissingScope("consumer_lag=true needs the scope 'admin': consumer lag is the installation's figure")
    since = utcnow() - timedelta(minutes=window_minutes)
    series = await deps.stats.series(principal.tenant, since)
    per_schedule = await deps.stats.by_schedule(principal.tenant, schedule_id or [], since)
    lag: dict[str, int] | None = None
    if consumer_lag:
        try:
            lag = await deps.consumer_lag.lag()
        except Exception as exc:  # noqa: BLE001 - the figure is optional; the rest of the answer still stands
            log.warning("consumer lag unavailable: %s", exc)
    return StatsOut(
        window_minutes=window_minutes,
        series=[MinuteOut(**asdict(m)) for m in series],
        schedules=[ScheduleFiguresOut(**asdict(s)) for s in per_schedule],
        dead_letters=await deps.stats.dead_letters(principal.tenant),
        consumer_lag=lag,
    )
