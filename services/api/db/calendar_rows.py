"""Calendars as rows of ``calendars`` and back; shared by the calendar repository and the schedules that name them."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db.tables import calendars
from shared.errors import InvalidSchedule
from shared.events.calendar import CalendarDefinition, CalendarRules


def calendar_rules(row: Row[Any]) -> CalendarRules:
    m = row._mapping
    return CalendarRules.model_validate(
        {k: m[k] for k in ("id", "version", "name", "timezone", "exclude_dates", "exclude_weekdays", "exclude_ranges")}
    )


def calendar_values(definition: CalendarDefinition) -> dict[str, Any]:
    """The definition's columns (the lists as JSON)."""
    values = definition.model_dump(mode="json", by_alias=True, include=set(CalendarDefinition.model_fields))
    return values


async def named_calendars(
    conn: AsyncConnection, tenant: str, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, CalendarRules]:
    """The tenant's calendars among ``ids``, share-locked until the transaction ends (a delete waits for it);
    a missing one is a 422 naming ``calendar_ids``."""
    wanted = set(ids)
    if not wanted:
        return {}
    rows = (
        await conn.execute(
            select(calendars)
            .where(calendars.c.tenant_id == tenant, calendars.c.id.in_(wanted))
            .order_by(calendars.c.id)
            .with_for_update(read=True)
        )
    ).all()
    found = {row.id: calendar_rules(row) for row in rows}
    missing = sorted(str(i) for i in wanted - found.keys())
    if missing:
        raise InvalidSchedule("calendar_ids", f"no calendar {', '.join(missing)}")
    return found
