"""Every event type Chime produces, and the one decoder for all of them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.errors import EventDecodeError
from shared.events.envelope import Envelope
from shared.events.flow import FlowLimitData
from shared.events.runs import (
    DlqEntryData,
    ReplayCommandData,
    RunCancelledData,
    RunDueData,
    RunFinishedData,
    RunOutcomeData,
    RunSkippedData,
)
from shared.events.schedule import ScheduleDeletedData, ScheduleState, ScheduleStoppedData
from shared.events.signing import SigningKeysData
from shared.types import Instant


class ScheduleUpserted(Envelope):
    type: Literal["dev.chime.schedule.upserted.v1"] = "dev.chime.schedule.upserted.v1"
    data: ScheduleState


class ScheduleDeleted(Envelope):
    type: Literal["dev.chime.schedule.deleted.v1"] = "dev.chime.schedule.deleted.v1"
    data: ScheduleDeletedData


class ScheduleStopped(Envelope):
    type: Literal["dev.chime.schedule.stopped.v1"] = "dev.chime.schedule.stopped.v1"
    data: ScheduleStoppedData


class SigningKeysUpdated(Envelope):
    type: Literal["dev.chime.signing_keys.updated.v1"] = "dev.chime.signing_keys.updated.v1"
    data: SigningKeysData


class FlowLimitChanged(Envelope):
    type: Literal["dev.chime.flow_limit.changed.v1"] = "dev.chime.flow_limit.changed.v1"
    data: FlowLimitData


class RunDue(Envelope):
    type: Literal["dev.chime.run.due.v1"] = "dev.chime.run.due.v1"
    data: RunDueData


class RunCancelled(Envelope):
    type: Literal["dev.chime.run.cancelled.v1"] = "dev.chime.run.cancelled.v1"
    data: RunCancelledData


class RunSucceeded(Envelope):
    type: Literal["dev.chime.run.succeeded.v1"] = "dev.chime.run.succeeded.v1"
    data: RunOutcomeData


class RunAttemptFailed(Envelope):
    type: Literal["dev.chime.run.attempt_failed.v1"] = "dev.chime.run.attempt_failed.v1"
    data: RunOutcomeData


class RunDeadLettered(Envelope):
    type: Literal["dev.chime.run.dead_lettered.v1"] = "dev.chime.run.dead_lettered.v1"
    data: RunOutcomeData


class RunSkipped(Envelope):
    type: Literal["dev.chime.run.skipped.v1"] = "dev.chime.run.skipped.v1"
    data: RunSkippedData


class DlqEntry(Envelope):
    type: Literal["dev.chime.dlq.entry.v1"] = "dev.chime.dlq.entry.v1"
    data: DlqEntryData


class ReplayCommand(Envelope):
    type: Literal["dev.chime.command.replay.v1"] = "dev.chime.command.replay.v1"
    data: ReplayCommandData


class BackfillCommandData(BaseModel):
    """Run these nominal times of a schedule now, with ``trigger: backfill`` and their usual run ids."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schedule_id: uuid.UUID
    tenant_id: str
    nominal_times: list[Instant]
    requested_at: Instant


class BackfillCommand(Envelope):
    type: Literal["dev.chime.command.backfill.v1"] = "dev.chime.command.backfill.v1"
    data: BackfillCommandData


class RunNowCommandData(RunDueData):
    """``run-now``: the API asks the planner to fire one run outside the plan."""


class RunNowCommand(Envelope):
    type: Literal["dev.chime.command.run_now.v1"] = "dev.chime.command.run_now.v1"
    data: RunNowCommandData


class RunFinishedCommand(Envelope):
    """The executor tells the planner that a run it holds a schedule back for has ended."""

    type: Literal["dev.chime.command.run_finished.v1"] = "dev.chime.command.run_finished.v1"
    data: RunFinishedData


ChimeEvent = Annotated[
    ScheduleUpserted
    | ScheduleDeleted
    | ScheduleStopped
    | SigningKeysUpdated
    | FlowLimitChanged
    | RunDue
    | RunCancelled
    | RunSucceeded
    | RunAttemptFailed
    | RunDeadLettered
    | RunSkipped
    | DlqEntry
    | ReplayCommand
    | RunNowCommand
    | BackfillCommand
    | RunFinishedCommand,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[Envelope], ...] = (
    ScheduleUpserted,
    ScheduleDeleted,
    ScheduleStopped,
    SigningKeysUpdated,
    FlowLimitChanged,
    RunDue,
    RunCancelled,
    RunSucceeded,
    RunAttemptFailed,
    RunDeadLettered,
    RunSkipped,
    DlqEntry,
    ReplayCommand,
    RunNowCommand,
    BackfillCommand,
    RunFinishedCommand,
)

_ADAPTER: TypeAdapter[ChimeEvent] = TypeAdapter(ChimeEvent)


def encode_event(event: Envelope) -> bytes:
    return event.model_dump_json().encode()


def decode_event(raw: bytes) -> ChimeEvent:
    try:
        return _ADAPTER.validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(f"not a Chime event: {exc.error_count()} error(s)") from exc
