"""Cron fire times against an independent oracle that applies Debian cron's DST rules by brute force.

The oracle never calls cronsim: it walks local dates (fixed-time jobs) or UTC minutes (wildcard-hour jobs).
- A fixed-time job fires once per local day: at its wall time; in a skipped span, at the first instant after
  the jump; in a repeated span, at the first pass only.
- A job with a wildcard hour fires at every real instant whose local minute matches, so both passes of a
  repeated hour fire and a skipped hour has none. Checked in whole-hour DST zones only: around Lord Howe's
  30-minute shifts cronsim (the reference, design.md §1) departs from this rule (docs/decisions.md).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.schedule import PlanSpec, ScheduleType, preview

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Tokyo", "UTC"]
SID = uuid.UUID("0193a6c4-0000-7000-8000-0000000000cc")
MINUTE = timedelta(minutes=1)


def _wall(t: datetime, zone: ZoneInfo) -> datetime:
    return t.astimezone(zone).replace(tzinfo=None)


def oracle_fixed(hour: int, minute: int, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    day: date = _wall(after, zone).date() - timedelta(days=1)
    while len(out) < count:
        wall = datetime(day.year, day.month, day.day, hour, minute)  # noqa: DTZ001 - a wall-clock time
        first = datetime.combine(day, wall.time(), tzinfo=zone).replace(fold=0).astimezone(UTC)
        if _wall(first, zone) != wall:
            # Skipped wall time: the first instant after the jump, found by walking real minutes.
            t = first - timedelta(hours=3)
            while _wall(t, zone) <= wall:
                t += MINUTE
            first = t
        if first > after:
            out.append(first)
        day += timedelta(days=1)
    return out


def oracle_hourly(minute: int, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    t = after.replace(second=0, microsecond=0) + MINUTE
    while len(out) < count:
        local = t.astimezone(zone)
        if local.minute == minute:
            out.append(t)
        t += MINUTE
    return out


def chime_fires(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    spec = PlanSpec(schedule_id=SID, type=ScheduleType.CRON, created_at=after, cron_expr=expr, timezone=tz)
    return [f.nominal for f in preview(spec, after, count)]


# Start near DST changes half of the time: that is where schedulers go wrong.
TRANSITIONS = [
    datetime(2026, 3, 28, tzinfo=UTC),  # Berlin spring forward (29 Mar)
    datetime(2026, 10, 24, tzinfo=UTC),  # Berlin fall back (25 Mar)
    datetime(2026, 3, 7, tzinfo=UTC),  # New York spring forward (8 Mar)
    datetime(2026, 10, 31, tzinfo=UTC),  # New York fall back (1 Nov)
    datetime(2026, 4, 4, tzinfo=UTC),  # Lord Howe fall back, 30 minutes (5 Apr)
    datetime(2026, 10, 3, tzinfo=UTC),  # Lord Howe spring forward, 30 minutes (4 Oct)
]
starts = st.one_of(
    st.sampled_from(TRANSITIONS).flatmap(lambda d: st.integers(0, 48 * 60).map(lambda m: d + m * MINUTE)),
    # hypothesis takes naive bounds and draws naive values; they are made UTC right away.
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31)).map(  # noqa: DTZ001
        lambda d: d.replace(tzinfo=UTC)
    ),
)


@settings(max_examples=300)
@given(zone=st.sampled_from(ZONES), hour=st.integers(0, 23), minute=st.integers(0, 59), after=starts)
def test_fixed_time_jobs_match_the_oracle(zone: str, hour: int, minute: int, after: datetime) -> None:
    after = after.replace(second=0, microsecond=0)
    expected = oracle_fixed(hour, minute, ZoneInfo(zone), after, 4)
    assert chime_fires(f"{minute} {hour} * * *", zone, after, 4) == expected


@settings(max_examples=200)
@given(zone=st.sampled_from([z for z in ZONES if z != "Australia/Lord_Howe"]), minute=st.integers(0, 59), after=starts)
def test_wildcard_hour_jobs_match_the_oracle(zone: str, minute: int, after: datetime) -> None:
    after = after.replace(second=0, microsecond=0)
    expected = oracle_hourly(minute, ZoneInfo(zone), after, 30)
    assert chime_fires(f"{minute} * * * *", zone, after, 30) == expected


def test_lord_howe_wildcard_hour_follows_cronsim() -> None:
    """Pinned, documented behaviour around 30-minute shifts (see docs/decisions.md)."""
    zone = "Australia/Lord_Howe"
    # Fall back 2026-04-05 02:00 (+11) -> 01:30 (+10:30): the repeated half hour fires once.
    fires = chime_fires("30 * * * *", zone, datetime(2026, 4, 4, 13, 0, tzinfo=UTC), 3)
    assert [f.astimezone(ZoneInfo(zone)).isoformat() for f in fires] == [
        "2026-04-05T00:30:00+11:00",
        "2026-04-05T01:30:00+11:00",
        "2026-04-05T02:30:00+10:30",
    ]
    # Spring forward 2025-10-05 02:00 (+10:30) -> 02:30 (+11): 02:30 is not fired, 03:30 is next.
    fires = chime_fires("30 * * * *", zone, datetime(2025, 10, 4, 14, 0, tzinfo=UTC), 2)
    assert [f.astimezone(ZoneInfo(zone)).isoformat() for f in fires] == [
        "2025-10-05T01:30:00+10:30",
        "2025-10-05T03:30:00+11:00",
    ]
