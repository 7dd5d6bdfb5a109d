"""The root of every error Chime raises on purpose."""

from __future__ import annotations

from typing import ClassVar


class ChimeError(Exception):
    """Base class. ``retryable`` tells a caller whether trying the same thing again can succeed."""

    retryable: ClassVar[bool] = False


class ConfigurationError(ChimeError, ValueError):
    """A setting is missing or unsafe."""


class InvalidSchedule(ChimeError, ValueError):
    """A schedule definition cannot be planned. ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidSelector(InvalidSchedule):
    """A bulk operation's selector is empty or matches too many schedules."""


class EventDecodeError(ChimeError, ValueError):
    """A Kafka record is not a valid Chime CloudEvent."""
