"""What one recorder batch changes, gathered so that it is written with a handful of set-based statements.

A batch is cut into segments at every event that must be applied on its own, in order (a replay reopening a
dead run, a cancel, a skip). Inside a segment, run.due and attempt outcomes commute: a run row is created by
whichever event came first, its status only moves forward, and an attempt row is keyed by (run, attempt).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events.probe import DueRowData
from shared.events.runs import RunDueData, RunOutcomeData, RunStatus

# An outcome outranks a skip: a cancel that reached the history after the call had started (it cannot stop it)
# leaves the run with what really happened.
RANK = {
    RunStatus.QUEUED: 0,
    RunStatus.RUNNING: 1,
    RunStatus.RETRYING: 2,
    RunStatus.SKIPPED: 3,
    RunStatus.SUCCEEDED: 4,
    RunStatus.FAILED: 4,
    RunStatus.DEAD_LETTERED: 4,
}
FINISHED_RANK = 3


@dataclass(frozen=True, slots=True)
class StatusChange:
    status: RunStatus
    finished_at: datetime | None

    @property
    def rank(self) -> int:
        return RANK[self.status]


@dataclass
class RunBatch:
    """Rows to insert and changes to apply; every map is keyed so a repeated event changes nothing."""

    runs: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[uuid.UUID, StatusChange] = field(default_factory=dict)
    attempts: dict[tuple[uuid.UUID, int], dict[str, Any]] = field(default_factory=dict)
    completions: dict[uuid.UUID, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.runs or self.statuses or self.attempts or self.completions)

    def _add_run(
        self, d: RunDueData | DueRowData | RunOutcomeData, planned: datetime | None, status: RunStatus
    ) -> None:
        """The run row as the first event of the run in this batch would create it."""
        self.runs.setdefault(
            d.run_id,
            {
                "id": d.run_id,
                "schedule_id": d.schedule_id,
                "tenant_id": d.tenant_id,
                "scheduled_for": d.nominal_time,
                "planned_for": planned,
                "status": status.value,
                "trigger": d.trigger.value,
            },
        )

    def add_due(self, d: RunDueData | DueRowData) -> None:
        self._add_run(d, d.planned_time, RunStatus.QUEUED)

    def add_completion(self, schedule_id: uuid.UUID, version: int) -> None:
        self.completions[schedule_id] = max(version, self.completions.get(schedule_id, version))

    def add_outcome(self, d: RunOutcomeData) -> None:
        self._add_run(d, None, d.status)
        change = StatusChange(d.status, d.finished_at if RANK[d.status] >= FINISHED_RANK else None)
        current = self.statuses.get(d.run_id)
        if current is None or change.rank > current.rank:
            self.statuses[d.run_id] = change
        self.attempts[(d.run_id, d.attempt)] = {
            "run_id": d.run_id,
            "attempt": d.attempt,
            "worker": d.worker,
            "started_at": d.started_at,
            "finished_at": d.finished_at,
            "http_status": d.http_status,
            "duration_ms": d.duration_ms,
            "error": d.error,
            "response_excerpt": d.response_excerpt,
        }
