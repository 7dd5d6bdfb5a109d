"""The little the planner needs from a run result: which run, and whether it is over."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from shared.events import RunAttemptFailed, RunDeadLettered, RunSucceeded
from shared.events.runs import RunStatus

_OUTCOME_TYPES = frozenset(
    cls.model_fields["type"].default for cls in (RunSucceeded, RunAttemptFailed, RunDeadLettered)
)
_FINISHED = frozenset(s.value for s in (RunStatus.SUCCEEDED, RunStatus.DEAD_LETTERED, RunStatus.FAILED))


class _ProbeData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    run_id: uuid.UUID | None = None
    status: str | None = None


class ResultProbe(BaseModel):
    """Reads ``type``, ``data.run_id`` and ``data.status`` of any record on ``chime.runs.results``."""

    model_config = ConfigDict(extra="ignore")

    type: str
    data: _ProbeData

    def finishes_run(self) -> bool:
        return self.type in _OUTCOME_TYPES and self.data.run_id is not None and self.data.status in _FINISHED
