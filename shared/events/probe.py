"""A light read of a run result: which run, and what triggered it.

The DLQ service sees every record on ``chime.runs.results`` but acts only on replayed successes; this parse
skips building the full event for the rest.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict

from shared.events.catalog import RunSucceeded
from shared.events.runs import Trigger

_SUCCEEDED = RunSucceeded.model_fields["type"].default


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
