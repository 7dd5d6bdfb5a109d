"""Checks a schedule definition needs beyond its field types: type-specific fields, plannability, targets."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from services.api.targets import check_target
from shared.errors import InvalidSchedule
from shared.events.schedule import ScheduleDefinition, plan_spec
from shared.schedule import ScheduleType, validate_spec
from shared.settings import Settings

_FIELDS_BY_TYPE = {
    ScheduleType.CRON: "cron_expr",
    ScheduleType.INTERVAL: "interval_seconds",
    ScheduleType.ONEOFF: "run_at",
}


async def check_definition(
    definition: ScheduleDefinition,
    *,
    settings: Settings,
    schedule_id: uuid.UUID,
    created_at: datetime,
    now: datetime,
    previous: ScheduleDefinition | None = None,
) -> None:
    """Raise :class:`InvalidSchedule` naming the first field that makes the definition unusable."""
    for kind, field in _FIELDS_BY_TYPE.items():
        if kind is not definition.type and getattr(definition, field) is not None:
            raise InvalidSchedule(field, f"{field} does not apply to a {definition.type.value} schedule")
    validate_spec(plan_spec(definition, schedule_id, created_at), now)
    if definition.type is ScheduleType.ONEOFF and definition.run_at is not None:
        moved = previous is None or previous.run_at != definition.run_at
        if moved and definition.run_at < now - timedelta(seconds=definition.misfire_grace_seconds):
            raise InvalidSchedule("run_at", "run_at is in the past beyond misfire_grace_seconds")
    if previous is None or previous.payload.url != definition.payload.url:
        await check_target(definition.payload.url, allow_private=settings.allow_private_targets)
