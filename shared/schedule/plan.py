"""When a schedule fires: one code path for the planner, the API preview and backfill.

Rules (also in docs/decisions.md):
- interval: fires at ``start_at + k·interval`` (k ≥ 0) when ``start_at`` is set, otherwise at
  ``created_at + k·interval`` (k ≥ 1). The cadence is pinned to that anchor, so processing delays never
  drift it.
- cron: every cron instant in the schedule's zone, at or after ``start_at``.
- oneoff: ``run_at`` once.
- ``end_at`` is inclusive; ``max_runs`` caps the number of planned fires.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.errors import InvalidSchedule
from shared.schedule.cron import cron_fires_after, validate_cron
from shared.timefmt import format_utc, truncate_ms

_MS = timedelta(milliseconds=1)


class ScheduleType(StrEnum):
    CRON = "cron"
    INTERVAL = "interval"
    ONEOFF = "oneoff"


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """The fields of a schedule that decide its fire times. All instants are timezone-aware."""

    schedule_id: uuid.UUID
    type: ScheduleType
    created_at: datetime
    timezone: str = "UTC"
    cron_expr: str | None = None
    interval_seconds: int | None = None
    run_at: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None
    max_runs: int | None = None
    jitter_seconds: int = 0

    @property
    def zone(self) -> ZoneInfo:
        return load_zone(self.timezone)


@dataclass(frozen=True, slots=True)
class FireTime:
    """A nominal fire time (the run's identity) and when it is actually planned, after jitter."""

    nominal: datetime
    planned: datetime


def load_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidSchedule("timezone", f"unknown IANA time zone {name!r}") from exc


def validate_spec(spec: PlanSpec, now: datetime) -> None:
    """Raise :class:`InvalidSchedule` naming the field when ``spec`` cannot be planned."""
    zone = spec.zone
    if spec.start_at is not None and spec.end_at is not None and spec.end_at < spec.start_at:
        raise InvalidSchedule("end_at", "end_at is before start_at")
    if spec.max_runs is not None and spec.max_runs < 1:
        raise InvalidSchedule("max_runs", "max_runs must be at least 1")
    if spec.jitter_seconds < 0:
        raise InvalidSchedule("jitter_seconds", "jitter_seconds cannot be negative")
    match spec.type:
        case ScheduleType.CRON:
            if not spec.cron_expr:
                raise InvalidSchedule("cron_expr", "a cron schedule needs cron_expr")
            validate_cron(spec.cron_expr, zone, now)
        case ScheduleType.INTERVAL:
            if spec.interval_seconds is None:
                raise InvalidSchedule("interval_seconds", "an interval schedule needs interval_seconds")
            if spec.interval_seconds < 1:
                raise InvalidSchedule("interval_seconds", "interval_seconds must be at least 1")
        case ScheduleType.ONEOFF:
            if spec.run_at is None:
                raise InvalidSchedule("run_at", "a one-off schedule needs run_at")


def _raw_fires_after(spec: PlanSpec, after: datetime) -> Iterator[datetime]:
    """Nominal instants strictly after ``after``, ignoring ``end_at`` and ``max_runs``."""
    floor = after
    if spec.start_at is not None and spec.start_at - _MS > floor:
        floor = spec.start_at - _MS
    match spec.type:
        case ScheduleType.CRON:
            if spec.cron_expr is None:
                raise InvalidSchedule("cron_expr", "a cron schedule needs cron_expr")
            yield from (truncate_ms(t) for t in cron_fires_after(spec.cron_expr, spec.zone, floor))
        case ScheduleType.INTERVAL:
            if spec.interval_seconds is None:
                raise InvalidSchedule("interval_seconds", "an interval schedule needs interval_seconds")
            step = timedelta(seconds=spec.interval_seconds)
            if spec.start_at is not None:
                anchor, first_k = truncate_ms(spec.start_at.astimezone(UTC)), 0
            else:
                anchor, first_k = truncate_ms(spec.created_at.astimezone(UTC)), 1
            k = max(first_k, (floor - anchor) // step + 1) if floor >= anchor else first_k
            while True:
                yield anchor + k * step
                k += 1
        case ScheduleType.ONEOFF:
            if spec.run_at is None:
                raise InvalidSchedule("run_at", "a one-off schedule needs run_at")
            run_at = truncate_ms(spec.run_at.astimezone(UTC))
            if run_at > floor:
                yield run_at


def iter_fires(spec: PlanSpec, after: datetime, runs_so_far: int = 0) -> Iterator[FireTime]:
    """Every planned fire strictly after ``after``, honouring ``end_at`` and the ``max_runs`` still left."""
    remaining = None if spec.max_runs is None else spec.max_runs - runs_so_far
    if remaining is not None and remaining <= 0:
        return
    for nominal in _raw_fires_after(spec, after):
        if spec.end_at is not None and nominal > spec.end_at:
            return
        yield FireTime(nominal=nominal, planned=nominal + jitter_offset_ms(spec, nominal) * _MS)
        if remaining is not None:
            remaining -= 1
            if remaining <= 0:
                return


def next_fire_after(spec: PlanSpec, after: datetime, runs_so_far: int = 0) -> FireTime | None:
    return next(iter_fires(spec, after, runs_so_far), None)


def first_fire_at_or_after(spec: PlanSpec, at: datetime, runs_so_far: int = 0) -> FireTime | None:
    return next_fire_after(spec, at - _MS, runs_so_far)


def preview(spec: PlanSpec, now: datetime, count: int, runs_so_far: int = 0) -> list[FireTime]:
    out: list[FireTime] = []
    for fire in iter_fires(spec, now, runs_so_far):
        out.append(fire)
        if len(out) >= count:
            break
    return out


def jitter_offset_ms(spec: PlanSpec, nominal: datetime) -> int:
    """A deterministic delay in ``[0, jitter_seconds]`` s, so a re-plan after a crash lands on the same instant."""
    if spec.jitter_seconds <= 0:
        return 0
    digest = hashlib.sha256(f"{spec.schedule_id}/{format_utc(nominal)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (spec.jitter_seconds * 1000 + 1)


def average_fire_rate(spec: PlanSpec, now: datetime) -> float:
    """Planned fires per second, averaged over the next day (what a tenant's fire-rate quota counts)."""
    match spec.type:
        case ScheduleType.INTERVAL:
            return 1.0 / spec.interval_seconds if spec.interval_seconds else 0.0
        case ScheduleType.ONEOFF:
            return 0.0
        case ScheduleType.CRON:
            horizon = now + timedelta(days=1)
            count = 0
            for fire in iter_fires(spec, now):
                if fire.nominal > horizon:
                    break
                count += 1
            return count / 86_400
