"""Chime's one wire format for instants: RFC 3339, UTC, millisecond precision, ``Z`` suffix."""

from __future__ import annotations

from datetime import UTC, datetime


def truncate_ms(value: datetime) -> datetime:
    """Drop sub-millisecond digits; nominal times are identities and must round-trip exactly."""
    return value.replace(microsecond=value.microsecond - value.microsecond % 1000)


def to_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("naive datetime: an offset is required")
    return truncate_ms(value.astimezone(UTC))


def format_utc(value: datetime) -> str:
    """``2026-12-01T09:00:00.000Z``."""
    return to_utc(value).strftime("%Y-%m-%dT%H:%M:%S.") + f"{to_utc(value).microsecond // 1000:03d}Z"


def format_local(value: datetime) -> str:
    """The same instant in its own zone, with the offset: ``2026-12-01T10:00:00.000+01:00``."""
    return value.isoformat(timespec="milliseconds")


def utcnow() -> datetime:
    return truncate_ms(datetime.now(UTC))
