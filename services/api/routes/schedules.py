"""``/api/schedules``: create, read, change, pause, delete, preview."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.api.auth import ReadSchedules, WriteSchedules
from services.api.db.schedules_repo import ListFilter, ScheduleRecord
from services.api.deps import Deps
from services.api.models import Page, PreviewItem, PreviewOut, RunOut, ScheduleCreate, ScheduleOut
from services.api.patching import patched, with_retries
from services.api.problems import invalid_cursor
from services.api.routes.runs import run_out
from services.api.validation import check_definition
from shared.errors import InvalidSchedule
from shared.events.calendar import preview_with_calendars
from shared.events.runs import SkipReason
from shared.events.schedule import ScheduleDefinition, ScheduleStatus, plan_spec
from shared.schedule import next_fire_after
from shared.schedule.plan import FireTime, load_zone
from shared.timefmt import format_local, format_utc, utcnow

router = APIRouter(prefix="/api/schedules", tags=["schedules"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]


def schedule_out(record: ScheduleRecord, now: datetime | None = None) -> ScheduleOut:
    state = record.state
    next_run_at = None
    if state.status is ScheduleStatus.ACTIVE:
        now = now or utcnow()
        after = max(now, record.last_run_at) if record.last_run_at else now
        fire = next_fire_after(plan_spec(state, state.id, state.created_at), after, record.run_count)
        next_run_at = fire.nominal if fire else None
    return ScheduleOut(
        **state.model_dump(exclude={"calendars"}),
        next_run_at=next_run_at,
        last_run_at=record.last_run_at,
        run_count=record.run_count,
        stats=record.stats,
    )


def _tagged(response: Response, record: ScheduleRecord) -> ScheduleOut:
    response.headers["ETag"] = f'"{record.state.version}"'
    return schedule_out(record)


def _request_hash(definition: ScheduleDefinition) -> str:
    return hashlib.sha256(definition.model_dump_json().encode()).hexdigest()


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ScheduleOut)
async def create_schedule(
    body: ScheduleCreate,
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=255)] = None,
) -> ScheduleOut:
    now = utcnow()
    await check_definition(body, settings=deps.settings, schedule_id=uuid.uuid4(), created_at=now, now=now)
    # Every fire is signed, so a tenant's first key exists before its first schedule can fire.
    await deps.keys.ensure_key(principal.tenant)
    # The body's hash is compared only for a repeated Idempotency-Key.
    request_hash = _request_hash(body) if idempotency_key is not None else ""
    record, _ = await deps.schedules.create(
        principal.tenant, body, idempotency_key=idempotency_key, request_hash=request_hash
    )
    response.headers["Location"] = f"/api/schedules/{record.state.id}"
    return _tagged(response, record)


@router.get("", response_model=Page[ScheduleOut])
async def list_schedules(
    principal: ReadSchedules,
    deps: Deps,
    status_: Annotated[ScheduleStatus | None, Query(alias="status")] = None,
    type_: Annotated[str | None, Query(alias="type", pattern="^(cron|interval|oneoff)$")] = None,
    name: Annotated[str | None, Query(max_length=200, description="Name prefix")] = None,
    label: Annotated[list[str] | None, Query(description="key=value, or key alone; repeatable")] = None,
    failing: Annotated[
        bool | None, Query(description="true: only schedules whose last run failed (a failure streak of 1 or more)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[ScheduleOut]:
    labels: dict[str, str | None] = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        labels[key] = value if sep else None
    flt = ListFilter(status=status_, type=type_, name_prefix=name, labels=labels, failing=failing)
    try:
        records, next_cursor = await deps.schedules.list(principal.tenant, flt, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid_cursor() from exc
    now = utcnow()
    return Page[ScheduleOut](items=[schedule_out(r, now) for r in records], next_cursor=next_cursor)


@router.get("/{schedule_id}", response_model=ScheduleOut)
async def get_schedule(schedule_id: uuid.UUID, principal: ReadSchedules, deps: Deps, response: Response) -> ScheduleOut:
    return _tagged(response, await deps.schedules.get(principal.tenant, schedule_id))


@router.put("/{schedule_id}", response_model=ScheduleOut)
async def replace_schedule(
    schedule_id: uuid.UUID,
    body: ScheduleCreate,
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> ScheduleOut:
    current = await deps.schedules.get(principal.tenant, schedule_id)
    await check_definition(
        body,
        settings=deps.settings,
        schedule_id=schedule_id,
        created_at=current.state.created_at,
        now=utcnow(),
        previous=current.state,
    )
    record = await deps.schedules.replace(principal.tenant, schedule_id, body, if_match=if_match)
    return _tagged(response, record)


@router.patch("/{schedule_id}", response_model=ScheduleOut)
async def patch_schedule(
    schedule_id: uuid.UUID,
    body: Annotated[dict[str, Any], Body(description="JSON merge patch (RFC 7396) over the schedule")],
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> ScheduleOut:
    async def attempt() -> ScheduleOut:
        current = await deps.schedules.get(principal.tenant, schedule_id)
        base = current.state.model_dump(mode="json", include=set(ScheduleDefinition.model_fields))
        definition = patched(ScheduleDefinition, base, body)
        await check_definition(
            definition,
            settings=deps.settings,
            schedule_id=schedule_id,
            created_at=current.state.created_at,
            now=utcnow(),
            previous=current.state,
        )
        # The merge was computed from this version; apply it only to this version.
        expected = if_match if if_match is not None else f'"{current.state.version}"'
        record = await deps.schedules.replace(principal.tenant, schedule_id, definition, if_match=expected)
        return _tagged(response, record)

    return await with_retries(if_match, attempt)


@router.delete("/{schedule_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_schedule(
    schedule_id: uuid.UUID, principal: WriteSchedules, deps: Deps, if_match: IfMatch = None
) -> Response:
    await deps.schedules.delete(principal.tenant, schedule_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{schedule_id}/pause", response_model=ScheduleOut)
async def pause_schedule(
    schedule_id: uuid.UUID, principal: WriteSchedules, deps: Deps, response: Response, if_match: IfMatch = None
) -> ScheduleOut:
    record = await deps.schedules.set_paused(principal.tenant, schedule_id, True, if_match=if_match)
    return _tagged(response, record)


@router.post("/{schedule_id}/resume", response_model=ScheduleOut)
async def resume_schedule(
    schedule_id: uuid.UUID, principal: WriteSchedules, deps: Deps, response: Response, if_match: IfMatch = None
) -> ScheduleOut:
    record = await deps.schedules.set_paused(principal.tenant, schedule_id, False, if_match=if_match)
    return _tagged(response, record)


@router.post("/{schedule_id}/run-now", status_code=status.HTTP_202_ACCEPTED, response_model=RunOut)
async def run_schedule_now(schedule_id: uuid.UUID, principal: WriteSchedules, deps: Deps) -> RunOut:
    """Fire one run now, outside the plan. It does not count towards ``max_runs``. At most
    ``CHIME_RUN_NOW_PER_MINUTE`` a minute per tenant (429 with ``Retry-After`` beyond)."""
    await deps.run_now_limit.check(principal.tenant)
    return run_out(await deps.schedules.run_now(principal.tenant, schedule_id))


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime


class BackfillOut(BaseModel):
    count: int = Field(description="Runs requested: nominal times in the range that had not run yet.")


@router.post("/{schedule_id}/backfill", status_code=status.HTTP_202_ACCEPTED, response_model=BackfillOut)
async def backfill_schedule(
    schedule_id: uuid.UUID, body: BackfillRequest, principal: WriteSchedules, deps: Deps
) -> BackfillOut:
    """Run every nominal time in [from, to] (at most ``CHIME_BACKFILL_MAX_RUNS``) with ``trigger: backfill``,
    under the usual run ids; times that already ran are left out."""
    if body.to < body.from_:
        raise InvalidSchedule("to", "to is before from")
    if body.to > utcnow():
        raise InvalidSchedule("to", "a backfill covers the past; to is in the future")
    return BackfillOut(count=await deps.schedules.backfill(principal.tenant, schedule_id, body.from_, body.to))


def _preview_out(fires: list[tuple[FireTime, bool]], zone: tzinfo) -> PreviewOut:
    return PreviewOut(
        items=[
            PreviewItem(
                utc=format_utc(f.nominal),
                local=format_local(f.nominal.astimezone(zone)),
                planned=format_utc(f.planned),
                skipped=SkipReason.CALENDAR if excluded else None,
            )
            for f, excluded in fires
        ]
    )


@router.get("/{schedule_id}/preview", response_model=PreviewOut)
async def preview_schedule(
    schedule_id: uuid.UUID,
    principal: ReadSchedules,
    deps: Deps,
    count: Annotated[int, Query(ge=1, le=1000)] = 10,
    after: Annotated[datetime | None, Query(description="Start after this instant (default: now)")] = None,
    include_skipped: Annotated[
        bool, Query(description="Also list the times a calendar excludes, each with skipped: calendar")
    ] = False,
) -> PreviewOut:
    record = await deps.schedules.get(principal.tenant, schedule_id)
    state = record.state
    if after is not None and after.tzinfo is None:
        raise RequestValidationError(
            [{"loc": ("query", "after"), "msg": "a time zone offset is required", "type": "timezone_aware"}]
        )
    start = (after or utcnow()).astimezone(UTC)
    if state.status is ScheduleStatus.COMPLETED:
        return PreviewOut(items=[])
    calendars = await deps.calendars.rules(principal.tenant, state.calendar_ids)
    fires = preview_with_calendars(
        plan_spec(state, state.id, state.created_at),
        start,
        count,
        record.run_count,
        calendars,
        include_skipped=include_skipped,
    )
    return _preview_out(fires, load_zone(state.timezone))


@router.post("/preview", response_model=PreviewOut)
async def preview_definition(
    body: ScheduleCreate,
    principal: ReadSchedules,
    deps: Deps,
    count: Annotated[int, Query(ge=1, le=100)] = 10,
    include_skipped: Annotated[
        bool, Query(description="Also list the times a calendar excludes, each with skipped: calendar")
    ] = False,
) -> PreviewOut:
    """The next fire times of a definition not saved yet (a form's live preview): validated as a create is, but
    nothing is stored and the target is not resolved."""
    now = utcnow()
    await check_definition(
        body, settings=deps.settings, schedule_id=uuid.uuid4(), created_at=now, now=now, resolve_target=False
    )
    calendars = await deps.calendars.rules(principal.tenant, body.calendar_ids)
    fires = preview_with_calendars(
        plan_spec(body, uuid.uuid4(), now), now, count, 0, calendars, include_skipped=include_skipped
    )
    return _preview_out(fires, load_zone(body.timezone))
