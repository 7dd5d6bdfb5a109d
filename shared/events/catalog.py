"""Every event type Chime produces, and the one decoder for all of them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter, ValidationError

from shared.errors import EventDecodeError
from shared.events.envelope import Envelope
from shared.events.schedule import ScheduleDeletedData, ScheduleState
from shared.events.signing import SigningKeysData


class ScheduleUpserted(Envelope):
    type: Literal["dev.chime.schedule.upserted.v1"] = "dev.chime.schedule.upserted.v1"
    data: ScheduleState


class ScheduleDeleted(Envelope):
    type: Literal["dev.chime.schedule.deleted.v1"] = "dev.chime.schedule.deleted.v1"
    data: ScheduleDeletedData


class SigningKeysUpdated(Envelope):
    type: Literal["dev.chime.signing_keys.updated.v1"] = "dev.chime.signing_keys.updated.v1"
    data: SigningKeysData


ChimeEvent = Annotated[
    ScheduleUpserted | ScheduleDeleted | SigningKeysUpdated,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[Envelope], ...] = (ScheduleUpserted, ScheduleDeleted, SigningKeysUpdated)

_ADAPTER: TypeAdapter[ChimeEvent] = TypeAdapter(ChimeEvent)


def encode_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()


def decode_event(raw: bytes) -> ChimeEvent:
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(f"not a Chime event: {exc.error_count()} error(s)") from exc
