"""Exclusion calendars: dates, weekdays and ranges on which a schedule's fires are skipped (reason ``calendar``).

A calendar travels inside every ``schedule.upserted`` event of the schedules that name it (``ScheduleState
.calendars``), so the planner needs nothing but the schedule to decide a fire, and a calendar change reaches it as
an ordinary new version of each such schedule (docs/decisions.md, "Calendars travel inside schedule changes").
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.schedule import FireTime, PlanSpec, next_fire_after
from shared.types import Instant

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ExcludedRange(BaseModel):
    """A span of time, from inclusive to exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    from_: Instant = Field(alias="from")
    to: Instant

    @model_validator(mode="after")
    def _ordered(self) -> ExcludedRange:
        if self.to <= self.from_:
            raise ValueError("to must be after from")
        return self


class CalendarDefinition(BaseModel):
    """The user-writable part of a calendar."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: str = Field(default="UTC", description="The zone whose dates and weekdays are excluded.")
    exclude_dates: Annotated[list[date], Field(max_length=1_000)] = Field(
        default_factory=list, description="Whole local days (YYYY-MM-DD) in the calendar's time zone."
    )
    exclude_weekdays: Annotated[list[Weekday], Field(max_length=7)] = Field(default_factory=list)
    exclude_ranges: Annotated[list[ExcludedRange], Field(max_length=500)] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("exclude_weekdays")
    @classmethod
    def _no_repeats(cls, value: list[Weekday]) -> list[Weekday]:
        return sorted(set(value), key=WEEKDAYS.index)

    @field_validator("exclude_dates")
    @classmethod
    def _sorted_dates(cls, value: list[date]) -> list[date]:
        return sorted(set(value))


class CalendarRules(CalendarDefinition):
    """A calendar as schedules carry it: its definition, identity and version."""

    id: uuid.UUID
    version: int = Field(ge=1)


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def excluded_by(calendars: Sequence[CalendarRules], nominal: datetime) -> CalendarRules | None:
    """The first calendar that excludes the fire at ``nominal`` (an aware instant), or ``None``."""
    for calendar in calendars:
        local = nominal.astimezone(_zone(calendar.timezone))
        if calendar.exclude_weekdays and WEEKDAYS[local.weekday()] in calendar.exclude_weekdays:
            return calendar
        if calendar.exclude_dates and local.date() in calendar.exclude_dates:
            return calendar
        if any(r.from_ <= nominal < r.to for r in calendar.exclude_ranges):
            return calendar
    return None


# Fire times looked at for one preview, at most: a calendar may exclude nearly every time a schedule has.
_PREVIEW_SCAN = 10_000


def preview_with_calendars(
    spec: PlanSpec,
    after: datetime,
    count: int,
    runs_so_far: int,
    calendars: Sequence[CalendarRules],
    *,
    include_skipped: bool,
) -> list[tuple[FireTime, bool]]:
    """The next ``count`` fire times after ``after`` as the planner will treat them: (fire, excluded). Excluded
    times are listed only with ``include_skipped``, and do not count towards ``max_runs``, as in the planner."""
    out: list[tuple[FireTime, bool]] = []
    runs = runs_so_far
    for _ in range(_PREVIEW_SCAN):
        if len(out) >= count:
            break
        fire = next_fire_after(spec, after, runs)
        if fire is None:
            break
        after = fire.nominal
        excluded = bool(calendars) and excluded_by(calendars, fire.nominal) is not None
        if not excluded:
            runs += 1
        if include_skipped or not excluded:
            out.append((fire, excluded))
    return out
