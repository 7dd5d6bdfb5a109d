"""``/api/dlq``: dead runs, inspection, deletion and replay."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.auth import ReadDlq, WriteDlq
from services.api.db.dlq_repo import DlqFilter
from services.api.deps import Deps
from services.api.models import Page
from services.api.problems import invalid_cursor
from shared.dlq_states import DlqStatus
from shared.events.runs import AttemptRecord
from shared.types import Instant

router = APIRouter(prefix="/api/dlq", tags=["dead letters"])


class DlqEntryOut(BaseModel):
    id: uuid.UUID
    run_id: uuid.UUID
    schedule_id: uuid.UUID
    scheduled_for: Instant
    trigger: str
    status: DlqStatus
    reason: str
    last_http_status: int | None
    attempts: list[AttemptRecord]
    dead_at: Instant
    replay_count: int
    replay_requested_at: Instant | None


class BulkReplay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schedule_id: uuid.UUID | None = None
    http_status: int | None = Field(default=None, ge=100, le=599)
    from_: AwareDatetime | None = Field(default=None, alias="from")
    to: AwareDatetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    dry_run: bool = Field(default=False, description="true: only count the entries a replay would take now")


class BulkReplayOut(BaseModel):
    count: int = Field(description="Entries whose replay was requested (with dry_run: that a replay would take).")


def entry_out(row: dict[str, Any]) -> DlqEntryOut:
    return DlqEntryOut(**{k: row[k] for k in DlqEntryOut.model_fields if k != "attempts"}, attempts=row["attempts"])


@router.get("", response_model=Page[DlqEntryOut])
async def list_dead_letters(
    principal: ReadDlq,
    deps: Deps,
    schedule_id: uuid.UUID | None = None,
    http_status: Annotated[int | None, Query(ge=100, le=599)] = None,
    status_: Annotated[DlqStatus | None, Query(alias="status")] = None,
    since: Annotated[AwareDatetime | None, Query(alias="from")] = None,
    until: Annotated[AwareDatetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[DlqEntryOut]:
    flt = DlqFilter(schedule_id=schedule_id, http_status=http_status, status=status_, since=since, until=until)
    try:
        rows, next_cursor = await deps.dlq.list(principal.tenant, flt, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid_cursor() from exc
    return Page[DlqEntryOut](items=[entry_out(r) for r in rows], next_cursor=next_cursor)


@router.get("/{entry_id}", response_model=DlqEntryOut)
async def get_dead_letter(entry_id: uuid.UUID, principal: ReadDlq, deps: Deps) -> DlqEntryOut:
    return entry_out(await deps.dlq.get(principal.tenant, entry_id))


@router.post("/replay", status_code=status.HTTP_202_ACCEPTED, response_model=BulkReplayOut)
async def replay_dead_letters(body: BulkReplay, principal: WriteDlq, deps: Deps) -> BulkReplayOut:
    """Replay every dead entry matching the filter (at most ``limit``, ≤ 1,000 a call; the DLQ service paces
    the deliveries at ``CHIME_DLQ_REPLAY_PER_SECOND``). Replay requests are capped at ``CHIME_REPLAYS_PER_MINUTE``
    a minute per tenant; a ``dry_run`` is not counted."""
    flt = DlqFilter(schedule_id=body.schedule_id, http_status=body.http_status, since=body.from_, until=body.to)
    limit = min(body.limit, deps.settings.dlq_bulk_replay_limit)
    if body.dry_run:
        return BulkReplayOut(count=await deps.dlq.count_replayable(principal.tenant, flt, limit=limit))
    await deps.replay_limit.check(principal.tenant)
    return BulkReplayOut(count=await deps.dlq.replay_matching(principal.tenant, flt, limit=limit))


@router.post("/{entry_id}/replay", status_code=status.HTTP_202_ACCEPTED, response_model=DlqEntryOut)
async def replay_dead_letter(entry_id: uuid.UUID, principal: WriteDlq, deps: Deps) -> DlqEntryOut:
    """Replay one dead entry. Replay requests are capped at ``CHIME_REPLAYS_PER_MINUTE`` a minute per tenant."""
    await deps.replay_limit.check(principal.tenant)
    return entry_out(await deps.dlq.replay(principal.tenant, entry_id))


@router.delete("/{entry_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_dead_letter(entry_id: uuid.UUID, principal: WriteDlq, deps: Deps) -> Response:
    await deps.dlq.delete(principal.tenant, entry_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
