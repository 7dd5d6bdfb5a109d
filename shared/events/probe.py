"""Light reads of run records: only the fields a consumer decides on, not the whole event.

The DLQ service sees every record on ``chime.runs.results`` but acts only on replayed successes; the executor
holds announced runs until their time and needs only when, and which run, to do so.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, ValidationError

from shared.errors import EventDecodeError
from shared.events.catalog import RunCancelled, RunDue, RunSucceeded
from shared.events.runs import Trigger
from shared.types import Instant

_SUCCEEDED = RunSucceeded.model_fields["type"].default
_DUE: str = RunDue.model_fields["type"].default
_CANCELLED: str = RunCancelled.model_fields["type"].default


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


class _RunHead(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: uuid.UUID
    attempt: int = 1
    planned_time: Instant | None = None
    not_before: Instant | None = None


class RunProbe(BaseModel):
    """Reads what the executor needs to hold a ``run.due`` (or act on a ``run.cancelled``) until its time.

    A held run keeps its record's bytes and these few values, not the parsed event: thousands of runs held for
    the look-ahead would otherwise be tens of thousands of objects for every garbage collection to walk.
    """

    model_config = ConfigDict(extra="ignore")

    type: str
    data: _RunHead

    @property
    def is_due(self) -> bool:
        return self.type == _DUE

    @property
    def is_cancel(self) -> bool:
        return self.type == _CANCELLED


def probe_run(raw: bytes) -> RunProbe:
    try:
        return RunProbe.model_validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(f"not a run event: {exc.error_count()} error(s)") from exc
