"""Pauses and deletes the API has acknowledged, so their schedules' announced runs are not called.

The planner cancels announced runs when it applies a pause or delete, but a bulk change of thousands of schedules,
or a planner that is restarting, can take longer than a run's look-ahead. The API therefore also sends
``schedule.stopped`` on ``chime.runs.due`` with the change (one record per partition, keyed so that it lands on the
partition of the runs it stops), and the executor drops any planned run of an earlier version of those schedules
when its time comes.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from shared.events.runs import RunDueData, Trigger

# Long enough for any planner to have applied the change (its own cancels take over), short enough that a
# bulk delete of many schedules does not stay in memory.
STOP_MEMORY_S = 600.0
_PRUNE_EVERY_S = 10.0


@dataclass(slots=True)
class _Stop:
    version: int
    status: str
    until: float


class StoppedSchedules:
    def __init__(self, memory_s: float = STOP_MEMORY_S) -> None:
        self._memory_s = memory_s
        self._stops: dict[uuid.UUID, _Stop] = {}
        self._next_prune = 0.0

    def __len__(self) -> int:
        return len(self._stops)

    def stop(self, schedule_id: uuid.UUID, version: int, status: str) -> None:
        current = self._stops.get(schedule_id)
        if current is None or version >= current.version:
            self._stops[schedule_id] = _Stop(version, status, time.monotonic() + self._memory_s)

    def withdrawn(self, due: RunDueData) -> str | None:
        """Why ``due`` must not be called (``paused`` or ``deleted``), or None.

        Only planned first attempts are stopped: a run-now, backfill or replay is a request made after the change
        (it carries the current version), and an attempt already under way continues through its retries.
        """
        stop = self._stops.get(due.schedule_id)
        if stop is None or due.schedule_version >= stop.version:
            return None
        if due.trigger is not Trigger.SCHEDULE or due.attempt != 1:
            return None
        return stop.status

    def prune(self) -> None:
        """Forget stops older than the memory; cheap to call often (it looks at most every few seconds)."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_EVERY_S
        for schedule_id in [k for k, stop in self._stops.items() if stop.until <= now]:
            del self._stops[schedule_id]
