"""Run history: ``/api/schedules/{id}/runs`` and ``/api/runs/{run_id}``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from services.api.auth import ReadRuns
from services.api.db.runs_repo import RunFilter
from services.api.deps import Deps
from services.api.models import AttemptOut, Page, RunOut
from services.api.problems import invalid_cursor

router = APIRouter(prefix="/api", tags=["runs"])

RUN_STATUSES = "^(queued|running|succeeded|retrying|failed|dead_lettered|skipped)$"
TRIGGERS = "^(schedule|run_now|replay|backfill)$"


def run_out(row: dict[str, Any]) -> RunOut:
    return RunOut(
        id=row["id"],
        schedule_id=row["schedule_id"],
        scheduled_for=row["scheduled_for"],
        status=row["status"],
        trigger=row["trigger"],
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        attempts=[AttemptOut.model_validate(a, from_attributes=False) for a in row["attempts"]],
    )


@router.get("/schedules/{schedule_id}/runs", response_model=Page[RunOut])
async def list_runs(
    schedule_id: uuid.UUID,
    principal: ReadRuns,
    deps: Deps,
    status: Annotated[str | None, Query(pattern=RUN_STATUSES)] = None,
    trigger: Annotated[str | None, Query(pattern=TRIGGERS)] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Page[RunOut]:
    # The schedule must be the caller's (and not deleted), or the history answers 404 like the schedule.
    await deps.schedules.get(principal.tenant, schedule_id)
    flt = RunFilter(status=status, trigger=trigger, since=since, until=until)
    try:
        rows, next_cursor = await deps.runs.list_for_schedule(
            principal.tenant, schedule_id, flt, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise invalid_cursor() from exc
    return Page[RunOut](items=[run_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/runs/{run_id}", response_model=RunOut)
async def get_run(run_id: uuid.UUID, principal: ReadRuns, deps: Deps) -> RunOut:
    return run_out(await deps.runs.get(principal.tenant, run_id))


__all__ = ["datetime", "router"]
