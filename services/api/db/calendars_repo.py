"""Exclusion calendars in Postgres. A change also makes a new version of every schedule naming the calendar."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.db.calendar_rows import calendar_rules, calendar_values
from services.api.db.schedules_repo import ScheduleRepository, check_if_match, decode_cursor, encode_cursor
from services.api.errors import CalendarInUse, CalendarNotFound
from shared.db.tables import calendars, schedules
from shared.events.calendar import CalendarDefinition, CalendarRules
from shared.events.schedule import ScheduleStatus
from shared.runid import new_entity_id
from shared.timefmt import utcnow


@dataclass(frozen=True, slots=True)
class CalendarRecord:
    rules: CalendarRules
    tenant_id: str
    created_at: datetime
    updated_at: datetime


def _record(row: Row[Any]) -> CalendarRecord:
    return CalendarRecord(calendar_rules(row), row.tenant_id, row.created_at, row.updated_at)


async def _row(conn: AsyncConnection, tenant: str, calendar_id: uuid.UUID, *, for_update: bool = False) -> Row[Any]:
    """The tenant's calendar; another tenant's answers exactly like a missing one."""
    query = select(calendars).where(calendars.c.id == calendar_id, calendars.c.tenant_id == tenant)
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    if row is None:
        raise CalendarNotFound(f"no calendar {calendar_id}")
    return row


class CalendarRepository:
    def __init__(self, engine: AsyncEngine, schedules: ScheduleRepository, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._schedules = schedules
        self._on_commit = on_commit

    async def create(self, tenant: str, definition: CalendarDefinition) -> CalendarRecord:
        now = utcnow()
        values = {
            **calendar_values(definition),
            "id": new_entity_id(),
            "tenant_id": tenant,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(calendars).values(**values))
            return _record(await _row(conn, tenant, values["id"]))

    async def get(self, tenant: str, calendar_id: uuid.UUID) -> CalendarRecord:
        async with self._engine.connect() as conn:
            return _record(await _row(conn, tenant, calendar_id))

    async def rules(self, tenant: str, ids: Sequence[uuid.UUID]) -> list[CalendarRules]:
        """The tenant's calendars ``ids``, in that order (one deleted meanwhile is left out)."""
        if not ids:
            return []
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(select(calendars).where(calendars.c.tenant_id == tenant, calendars.c.id.in_(ids)))
            ).all()
        found = {r.id: calendar_rules(r) for r in rows}
        return [found[i] for i in ids if i in found]

    async def list(self, tenant: str, *, limit: int, cursor: str | None) -> tuple[list[CalendarRecord], str | None]:
        query = select(calendars).where(calendars.c.tenant_id == tenant)
        if cursor is not None:
            query = query.where(calendars.c.id > uuid.UUID(decode_cursor(cursor)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(calendars.c.id).limit(limit + 1))).all()
        records = [_record(r) for r in rows[:limit]]
        return records, encode_cursor(str(records[-1].rules.id)) if len(rows) > limit else None

    async def replace(
        self, tenant: str, calendar_id: uuid.UUID, definition: CalendarDefinition, *, if_match: str | None
    ) -> CalendarRecord:
        """Change the calendar; every live schedule naming it gets a new version carrying the change, so the
        planners apply it to the fires still ahead (and cancel runs announced for times it now excludes)."""
        now = utcnow()
        async with self._engine.begin() as conn:
            # Schedules first, then the calendar: the order a schedule change takes them in (its row, then the
            # calendars it names), so the two cannot deadlock.
            users = await self._schedules.lock_calendar_users(conn, tenant, calendar_id)
            row = await _row(conn, tenant, calendar_id, for_update=True)
            check_if_match(if_match, row.version, "calendar")
            await conn.execute(
                update(calendars)
                .where(calendars.c.id == calendar_id)
                .values(**calendar_values(definition), version=row.version + 1, updated_at=now)
            )
            await self._schedules.republish(conn, tenant, users, now)
            record = _record(await _row(conn, tenant, calendar_id))
        if users:
            self._on_commit()
        return record

    async def delete(self, tenant: str, calendar_id: uuid.UUID, *, if_match: str | None) -> None:
        async with self._engine.begin() as conn:
            row = await _row(conn, tenant, calendar_id, for_update=True)
            check_if_match(if_match, row.version, "calendar")
            users = (
                await conn.execute(
                    select(schedules.c.id)
                    .where(
                        schedules.c.tenant_id == tenant,
                        schedules.c.status != ScheduleStatus.DELETED.value,
                        schedules.c.calendar_ids.contains([calendar_id]),
                    )
                    .order_by(schedules.c.id)
                    .limit(5)
                )
            ).all()
            if users:
                named = ", ".join(str(u.id) for u in users)
                raise CalendarInUse(
                    f"calendar {calendar_id} is named by schedules ({named}); remove it from them first"
                )
            await conn.execute(delete(calendars).where(calendars.c.id == calendar_id))
