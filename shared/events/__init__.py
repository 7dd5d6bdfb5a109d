"""Event models: frozen pydantic models in CloudEvents envelopes, decoded through one TypeAdapter."""

from shared.events.catalog import (
    EVENT_TYPES,
    BackfillCommand,
    ChimeEvent,
    DlqEntry,
    ReplayCommand,
    RunAttemptFailed,
    RunCancelled,
    RunDeadLettered,
    RunDue,
    RunNowCommand,
    RunSkipped,
    RunSucceeded,
    ScheduleDeleted,
    ScheduleUpserted,
    SigningKeysUpdated,
    decode_event,
    encode_event,
)
from shared.events.envelope import CONTENT_TYPE, Envelope

__all__ = [
    "BackfillCommand",
    "CONTENT_TYPE",
    "EVENT_TYPES",
    "ChimeEvent",
    "DlqEntry",
    "ReplayCommand",
    "RunDeadLettered",
    "RunAttemptFailed",
    "RunCancelled",
    "RunDue",
    "RunNowCommand",
    "RunSkipped",
    "RunSucceeded",
    "Envelope",
    "ScheduleDeleted",
    "ScheduleUpserted",
    "SigningKeysUpdated",
    "decode_event",
    "encode_event",
]
