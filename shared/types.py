"""Annotated types shared by every boundary model."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, PlainSerializer, WithJsonSchema

from shared.timefmt import format_utc, to_utc

# An instant: input must carry an offset (a naive time is refused); stored in UTC at millisecond precision;
# written as RFC 3339 with ``Z``.
Instant = Annotated[
    AwareDatetime,
    AfterValidator(to_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    # The serializer's plain ``str`` would hide what the string is from the published schemas.
    WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization"),
]

__all__ = ["Instant", "datetime"]
