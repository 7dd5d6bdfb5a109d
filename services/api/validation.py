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
    resolve_target: bool = True,
) -> None:
    """Raise :class:`InvalidSchedule` naming the first field that makes the definition unusable. Without
    ``resolve_target``, the target's address is left unchecked (a preview calls nothing)."""
    for kind, field in _FIELDS_BY_TYPE.items():
        if kind is not definition.type and getattr(definition, field) is not None:
            raise InvalidSchedule(field, f"{field} does not apply to a {definition.type.value} schedule")
    validate_spec(plan_spec(definition, schedule_id, created_at), now)
    if definition.type is ScheduleType.ONEOFF and definition.run_at is not None:
        moved = previous is None or previous.run_at != definition.run_at
        if moved and definition.run_at < now - timedelta(seconds=definition.misfire_grace_seconds):
            raise InvalidSchedule("run_at", "run_at is in the past beyond misfire_grace_seconds")
    _check_header_sizes(definition.payload.headers)
    if resolve_target and (previous is None or previous.payload.url != definition.payload.url):
        await check_target(definition.payload.url, allow_private=settings.allow_private_targets)


# Receivers commonly refuse a request whose headers pass 8–16 KiB: a schedule that could never be delivered is a
# 422. Checked on what the API accepts, not in the event model, so schedules stored before the limit still load.
MAX_HEADER_NAME_CHARS = 256
MAX_HEADER_VALUE_BYTES = 8 * 1024
MAX_HEADERS_BYTES = 16 * 1024


def _check_header_sizes(headers: dict[str, str]) -> None:
    total = 0
    for name, value in headers.items():
        if len(name) > MAX_HEADER_NAME_CHARS:
            raise InvalidSchedule("payload.headers", f"a header name is over {MAX_HEADER_NAME_CHARS} characters")
        size = len(value.encode())
        if size > MAX_HEADER_VALUE_BYTES:
            raise InvalidSchedule("payload.headers", f"header {name!r} is over {MAX_HEADER_VALUE_BYTES} bytes")
        total += len(name) + size
    if total > MAX_HEADERS_BYTES:
        raise InvalidSchedule("payload.headers", f"the headers are over {MAX_HEADERS_BYTES} bytes in all")
