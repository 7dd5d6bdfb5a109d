"""Fire-time math: DST behaviour per Debian cron (as cronsim implements it), intervals, bounds, jitter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import InvalidSchedule
from shared.schedule import PlanSpec, ScheduleType, iter_fires, next_fire_after, preview, validate_spec

SID = uuid.UUID("0193a6c4-0000-7000-8000-000000000001")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC", **kw: object) -> PlanSpec:
    return PlanSpec(schedule_id=SID, type=ScheduleType.CRON, created_at=T0, cron_expr=expr, timezone=tz, **kw)  # type: ignore[arg-type]


def local_fires(spec: PlanSpec, after_local: datetime, count: int) -> list[str]:
    zone = ZoneInfo(spec.timezone)
    return [f.nominal.astimezone(zone).isoformat() for f in preview(spec, after_local.astimezone(UTC), count)]


# Europe/Berlin: spring forward 2026-03-29 02:00 -> 03:00; fall back 2026-10-25 03:00 -> 02:00.
# America/New_York: spring forward 2026-03-08 02:00 -> 03:00; fall back 2026-11-01 02:00 -> 01:00.
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def test_fixed_time_in_skipped_hour_runs_once_right_after_the_jump_berlin() -> None:
    fires = local_fires(cron("30 2 * * *", "Europe/Berlin"), datetime(2026, 3, 28, tzinfo=BERLIN), 3)
    assert fires == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]


def test_fixed_time_in_skipped_hour_new_york() -> None:
    fires = local_fires(cron("30 2 * * *", "America/New_York"), datetime(2026, 3, 7, tzinfo=NEW_YORK), 3)
    assert fires == ["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_fixed_time_in_repeated_hour_runs_once_berlin() -> None:
    fires = local_fires(cron("30 2 * * *", "Europe/Berlin"), datetime(2026, 10, 24, tzinfo=BERLIN), 3)
    # Once on the fall-back day (first pass), and 02:30 local again the day after, not 03:30.
    assert fires == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_fixed_time_in_repeated_hour_runs_once_new_york() -> None:
    fires = local_fires(cron("30 1 * * *", "America/New_York"), datetime(2026, 10, 31, tzinfo=NEW_YORK), 3)
    assert fires == ["2026-10-31T01:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_hourly_job_fires_in_both_passes_of_the_repeated_hour() -> None:
    spec = cron("0 * * * *", "Europe/Berlin")
    fires = local_fires(spec, datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN), 5)
    assert fires == [
        "2026-10-25T01:00:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
        "2026-10-25T04:00:00+01:00",
    ]
    utc = [f.nominal for f in preview(spec, datetime(2026, 10, 24, 22, 30, tzinfo=UTC), 5)]
    assert all(b - a == timedelta(hours=1) for a, b in zip(utc, utc[1:], strict=False))


def test_hourly_job_skips_nothing_real_on_spring_forward_new_york() -> None:
    spec = cron("0 * * * *", "America/New_York")
    fires = local_fires(spec, datetime(2026, 3, 8, 0, 30, tzinfo=NEW_YORK), 3)
    assert fires == ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]


def test_cron_names_last_day_and_nth_weekday() -> None:
    assert local_fires(cron("0 9 L * *"), datetime(2026, 2, 1, tzinfo=UTC), 2) == [
        "2026-02-28T09:00:00+00:00",
        "2026-03-31T09:00:00+00:00",
    ]
    assert local_fires(cron("0 9 * * MON#2"), datetime(2026, 4, 1, tzinfo=UTC), 1) == ["2026-04-13T09:00:00+00:00"]
    assert local_fires(cron("0 9-17/4 * jan mon-fri"), datetime(2026, 1, 1, tzinfo=UTC), 3) == [
        "2026-01-01T09:00:00+00:00",
        "2026-01-01T13:00:00+00:00",
        "2026-01-01T17:00:00+00:00",
    ]


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4 *", "61 * * * *", "* * * *", "0 0 0 * * *", "@daily"])
def test_bad_or_impossible_cron_is_refused(expr: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        validate_spec(cron(expr), T0)
    assert info.value.field == "cron_expr"


def test_interval_without_start_is_anchored_to_creation() -> None:
    created = datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.INTERVAL, created_at=created, interval_seconds=10)
    fires = [f.nominal for f in preview(spec, created, 3)]
    assert fires == [created + timedelta(seconds=10 * k) for k in (1, 2, 3)]
    late = next_fire_after(spec, created + timedelta(seconds=95, milliseconds=1))
    assert late is not None and late.nominal == created + timedelta(seconds=100)


def test_interval_with_start_fires_at_start() -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.INTERVAL, created_at=T0, interval_seconds=3600, start_at=start)
    assert [f.nominal for f in preview(spec, T0, 2)] == [start, start + timedelta(hours=1)]


@given(
    interval=st.integers(min_value=1, max_value=86_400),
    offset_ms=st.integers(min_value=0, max_value=10**10),
)
def test_interval_fires_stay_on_the_anchor_grid(interval: int, offset_ms: int) -> None:
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.INTERVAL, created_at=T0, interval_seconds=interval)
    after = T0 + timedelta(milliseconds=offset_ms)
    fires = [f.nominal for f in preview(spec, after, 3)]
    step = timedelta(seconds=interval)
    assert fires[0] > after >= fires[0] - step
    for fire in fires:
        assert (fire - T0) % step == timedelta(0)
    assert fires[1] - fires[0] == fires[2] - fires[1] == step


def test_bounds_end_at_inclusive_and_max_runs() -> None:
    spec = PlanSpec(
        schedule_id=SID,
        type=ScheduleType.INTERVAL,
        created_at=T0,
        interval_seconds=60,
        end_at=T0 + timedelta(minutes=3),
    )
    assert len(list(iter_fires(spec, T0))) == 3
    capped = PlanSpec(schedule_id=SID, type=ScheduleType.INTERVAL, created_at=T0, interval_seconds=60, max_runs=3)
    assert len(list(iter_fires(capped, T0))) == 3
    assert len(list(iter_fires(capped, T0, runs_so_far=2))) == 1
    assert next_fire_after(capped, T0, runs_so_far=3) is None


def test_oneoff_fires_once() -> None:
    run_at = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.ONEOFF, created_at=T0, run_at=run_at)
    assert [f.nominal for f in iter_fires(spec, T0)] == [run_at]
    assert next_fire_after(spec, run_at) is None


def test_jitter_is_deterministic_and_bounded() -> None:
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.INTERVAL, created_at=T0, interval_seconds=60, jitter_seconds=30)
    first = preview(spec, T0, 50)
    assert first == preview(spec, T0, 50)
    offsets = [(f.planned - f.nominal).total_seconds() for f in first]
    assert all(0 <= o <= 30 for o in offsets)
    assert len(set(offsets)) > 10


def test_unknown_zone_is_refused() -> None:
    with pytest.raises(InvalidSchedule) as info:
        validate_spec(cron("* * * * *", "Europe/Atlantis"), T0)
    assert info.value.field == "timezone"
