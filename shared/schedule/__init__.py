"""Pure schedule math: when a schedule fires. No I/O; the planner and the API preview share it."""

from shared.schedule.plan import (
    FireTime,
    PlanSpec,
    ScheduleType,
    average_fire_rate,
    first_fire_at_or_after,
    iter_fires,
    jitter_offset_ms,
    next_fire_after,
    preview,
    validate_spec,
)

__all__ = [
    "FireTime",
    "PlanSpec",
    "ScheduleType",
    "average_fire_rate",
    "first_fire_at_or_after",
    "iter_fires",
    "jitter_offset_ms",
    "next_fire_after",
    "preview",
    "validate_spec",
]
