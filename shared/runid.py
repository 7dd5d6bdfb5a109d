"""Deterministic run identities (design.md §1): the idempotency key every webhook carries."""

from __future__ import annotations

import uuid
from datetime import datetime

import uuid6

from shared.timefmt import format_utc

# Fixed for the life of the product: changing it would change every run id and break deduplication.
RUN_NAMESPACE = uuid.UUID("6f1c2f0e-9a57-5c8e-b0d4-6368696d6521")


def planned_run_id(schedule_id: uuid.UUID, nominal_time: datetime) -> uuid.UUID:
    """The id of the run of ``schedule_id`` at ``nominal_time``; the same for a fire, a re-fire or a backfill."""
    return uuid.uuid5(RUN_NAMESPACE, f"{schedule_id}/{format_utc(nominal_time)}")


def adhoc_run_id() -> uuid.UUID:
    """A run-now gets a fresh, time-ordered id."""
    return uuid.UUID(str(uuid6.uuid7()))


def new_entity_id() -> uuid.UUID:
    """Schedules and other rows use UUIDv7, so ids sort by creation time and double as a cursor."""
    return uuid.UUID(str(uuid6.uuid7()))
