"""``/api/calendars``: exclusion calendars that schedules name in ``calendar_ids``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response, status

from services.api.auth import ReadSchedules, WriteSchedules
from services.api.db.calendars_repo import CalendarRecord
from services.api.deps import Deps
from services.api.models import CalendarCreate, CalendarOut, Page
from services.api.patching import patched, with_retries
from services.api.problems import invalid_cursor
from shared.events.calendar import CalendarDefinition

router = APIRouter(prefix="/api/calendars", tags=["calendars"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _out(response: Response | None, record: CalendarRecord) -> CalendarOut:
    if response is not None:
        response.headers["ETag"] = f'"{record.rules.version}"'
    return CalendarOut(
        **record.rules.model_dump(),
        tenant_id=record.tenant_id,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CalendarOut)
async def create_calendar(
    body: CalendarCreate, principal: WriteSchedules, deps: Deps, response: Response
) -> CalendarOut:
    record = await deps.calendars.create(principal.tenant, body)
    response.headers["Location"] = f"/api/calendars/{record.rules.id}"
    return _out(response, record)


@router.get("", response_model=Page[CalendarOut])
async def list_calendars(
    principal: ReadSchedules,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[CalendarOut]:
    try:
        records, next_cursor = await deps.calendars.list(principal.tenant, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid_cursor() from exc
    return Page[CalendarOut](items=[_out(None, r) for r in records], next_cursor=next_cursor)


@router.get("/{calendar_id}", response_model=CalendarOut)
async def get_calendar(calendar_id: uuid.UUID, principal: ReadSchedules, deps: Deps, response: Response) -> CalendarOut:
    return _out(response, await deps.calendars.get(principal.tenant, calendar_id))


@router.put("/{calendar_id}", response_model=CalendarOut)
async def replace_calendar(
    calendar_id: uuid.UUID,
    body: CalendarCreate,
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> CalendarOut:
    """Replace the calendar. Every schedule naming it gets a new version carrying the change."""
    return _out(response, await deps.calendars.replace(principal.tenant, calendar_id, body, if_match=if_match))


@router.patch("/{calendar_id}", response_model=CalendarOut)
async def patch_calendar(
    calendar_id: uuid.UUID,
    body: Annotated[dict[str, Any], Body(description="JSON merge patch (RFC 7396) over the calendar")],
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> CalendarOut:
    async def attempt() -> CalendarOut:
        current = await deps.calendars.get(principal.tenant, calendar_id)
        base = current.rules.model_dump(mode="json", by_alias=True, include=set(CalendarDefinition.model_fields))
        definition = patched(CalendarDefinition, base, body)
        expected = if_match if if_match is not None else f'"{current.rules.version}"'
        return _out(
            response, await deps.calendars.replace(principal.tenant, calendar_id, definition, if_match=expected)
        )

    return await with_retries(if_match, attempt)


@router.delete("/{calendar_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_calendar(
    calendar_id: uuid.UUID, principal: WriteSchedules, deps: Deps, if_match: IfMatch = None
) -> Response:
    """Delete the calendar: 409 while a schedule names it."""
    await deps.calendars.delete(principal.tenant, calendar_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
