"""Light reads of run records: only the fields a consumer decides on, not the whole event.

The DLQ service sees every record on ``chime.runs.results`` but acts only on replayed successes; the executor
holds announced runs until their time and needs only when, and which run, to do so; the recorder writes a row for
every announced run and needs only the row's values, not the delivery and retry policy (and their validators),
which were a fifth of its work.
"""

from __future__ import annotations

import uuid
from typing import cast

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from shared.errors import EventDecodeError
from shared.events.catalog import RunCancelled, RunDue, RunSucceeded, ScheduleStopped
from shared.events.runs import Trigger
from shared.types import Instant

_SUCCEEDED = RunSucceeded.model_fields["type"].default
_DUE: str = RunDue.model_fields["type"].default
_CANCELLED: str = RunCancelled.model_fields["type"].default
_STOPPED: str = ScheduleStopped.model_fields["type"].default


class _ProbeData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: uuid.UUID | None = None
    status: str | None = None
    trigger: str | None = None


class ResultProbe(BaseModel):
    """Reads ``type``, ``data.run_id``, ``data.status`` and ``data.trigger`` of any record on ``chime.runs.results``."""

    model_config = ConfigDict(extra="ignore")

    type: str
    data: _ProbeData

    def is_replay_success(self) -> bool:
        return self.type == _SUCCEEDED and self.data.trigger == Trigger.REPLAY.value


class _Stopped(BaseModel):
    model_config = ConfigDict(extra="ignore")

    schedule_id: uuid.UUID
    schedule_version: int


class _RunHead(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: uuid.UUID | None = None
    attempt: int = 1
    planned_time: Instant | None = None
    not_before: Instant | None = None
    # schedule.stopped
    schedules: list[_Stopped] | None = None
    status: str | None = None


class RunProbe(BaseModel):
    """Reads what the executor needs to hold a ``run.due`` (or act on a ``run.cancelled``) until its time.

    A held run keeps its record's bytes and these few values, not the parsed event: thousands of runs held for
    the look-ahead would otherwise be tens of thousands of objects for every garbage collection to walk.
    """

    model_config = ConfigDict(extra="ignore")

    type: str
    data: _RunHead

    @model_validator(mode="after")
    def _complete(self) -> RunProbe:
        if self.type in (_DUE, _CANCELLED) and self.data.run_id is None:
            raise ValueError("a run event without data.run_id")
        if self.type == _STOPPED and not self.data.schedules:
            raise ValueError("schedule.stopped without data.schedules")
        return self

    @property
    def is_due(self) -> bool:
        return self.type == _DUE

    @property
    def is_cancel(self) -> bool:
        return self.type == _CANCELLED

    @property
    def is_stop(self) -> bool:
        return self.type == _STOPPED

    @property
    def run_id(self) -> uuid.UUID:
        """The run of a ``run.due`` or ``run.cancelled`` (checked when probed)."""
        return cast(uuid.UUID, self.data.run_id)

    @property
    def stops(self) -> list[tuple[uuid.UUID, int, str]]:
        """(schedule id, version, status) of each schedule a ``schedule.stopped`` stops (checked when probed)."""
        status = self.data.status or ""
        return [(s.schedule_id, s.schedule_version, status) for s in self.data.schedules or ()]


def probe_run(raw: bytes) -> RunProbe:
    try:
        return RunProbe.model_validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(f"not a run event: {exc.error_count()} error(s)") from exc


class DueRowData(BaseModel):
    """The values of a ``run.due`` that its run's history row holds."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    schedule_version: int
    nominal_time: Instant
    planned_time: Instant
    trigger: Trigger = Trigger.SCHEDULE
    final: bool = False


class DueRow(BaseModel):
    """A ``run.due`` as the run history reads it (``probe_due_row``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str
    data: DueRowData


def probe_due_row(raw: bytes) -> DueRow | None:
    """The row values of a first-hand ``run.due`` (not a replay, which reopens a row and needs the whole event);
    None for any other record, or one this cannot read (the full decode then has the last word)."""
    if b'"type":"' + _DUE.encode() + b'"' not in raw:
        return None
    try:
        row = DueRow.model_validate_json(raw)
    except ValidationError:
        return None
    if row.type != _DUE or row.data.trigger is Trigger.REPLAY:
        return None
    return row
