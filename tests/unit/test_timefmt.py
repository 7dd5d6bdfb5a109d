"""The wire format for instants: RFC 3339, UTC, milliseconds, ``Z``, whatever the instant's own zone."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter

from shared.timefmt import format_utc


def _reference(value: datetime) -> str:
    """The same instant through the standard library: converted to UTC, truncated to milliseconds."""
    utc = value.astimezone(UTC)
    return (
        utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000, tzinfo=None).isoformat(
            timespec="milliseconds"
        )
        + "Z"
    )


def test_a_utc_instant_is_written_with_milliseconds_and_z() -> None:
    assert format_utc(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)) == "2026-12-01T09:00:00.000Z"
    assert format_utc(datetime(5, 1, 2, 3, 4, 5, 6_999, tzinfo=UTC)) == "0005-01-02T03:04:05.006Z"


def test_sub_millisecond_digits_are_dropped_not_rounded() -> None:
    assert format_utc(datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)) == "2026-12-31T23:59:59.999Z"


def test_an_instant_in_another_zone_is_converted_to_utc() -> None:
    berlin = datetime(2026, 7, 1, 12, 30, 15, 250_000, tzinfo=ZoneInfo("Europe/Berlin"))
    assert format_utc(berlin) == "2026-07-01T10:30:15.250Z"
    kolkata = datetime(2026, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert format_utc(kolkata) == "2025-12-31T18:30:00.000Z"


def test_an_instant_read_from_the_wire_writes_back_unchanged() -> None:
    # pydantic gives a ``Z`` instant its own UTC tzinfo, not ``datetime.UTC``.
    parsed = TypeAdapter(datetime).validate_json('"2026-11-29T08:00:00.123Z"')
    assert parsed.tzinfo is not UTC
    assert format_utc(parsed) == "2026-11-29T08:00:00.123Z"
    offset = TypeAdapter(datetime).validate_json('"2026-11-29T08:00:00.123-03:00"')
    assert format_utc(offset) == "2026-11-29T11:00:00.123Z"


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        format_utc(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_random_instants_match_the_standard_library() -> None:
    rng = random.Random(7)
    zones = [UTC, timezone(timedelta(0)), timezone(timedelta(hours=-9, minutes=-30)), ZoneInfo("Australia/Lord_Howe")]
    for _ in range(5_000):
        value = datetime(
            rng.randint(1970, 2100),
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 59),
            rng.randint(0, 59),
            rng.randint(0, 999_999),
            tzinfo=rng.choice(zones),
        )
        assert format_utc(value) == _reference(value)
