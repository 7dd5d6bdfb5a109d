"""A light read of a run result: which run, whether it is over, and what triggered it.

The planner and the DLQ service see every record on ``chime.runs.results`` but act on few of them; this
parse skips building the full event for the rest.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from shared.events.catalog import RunAttemptFailed, RunDeadLettered, RunSucceeded
from shared.events.runs import RunStatus, Trigger

_OUTCOME_TYPES = frozenset(
    cls.model_fields["type"].default for cls in (RunSucceeded, RunAttemptFailed, RunDeadLettered)
)
_SUCCEEDED = RunSucceeded.model_fields["type"].default
_FINISHED = frozenset(s.value for s in (RunStatus.SUCCEEDED, RunStatus.DEAD_LETTERED, RunStatus.FAILED))


class _ProbeData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: uuid.UUID | None = None
    status: str | None = None
    trigger: str | None = None


class ResultProbe(BaseModel):
    """Reads ``type``, ``data.run_id`` and ``data.status`` of any record on ``chime.runs.results``."""

    model_config = ConfigDict(extra="ignore")

    type: str
    data: _ProbeData

    def finishes_run(self) -> bool:
        return self.type in _OUTCOME_TYPES and self.data.run_id is not None and self.data.status in _FINISHED

    def is_replay_success(self) -> bool:
        return self.type == _SUCCEEDED and self.data.trigger == Trigger.REPLAY.value
