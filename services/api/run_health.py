"""A schedule's health as one recorder batch moves it: runs that ended, folded in the order they ended."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from shared.events.runs import RunStatus

FAILED = frozenset({RunStatus.FAILED, RunStatus.DEAD_LETTERED})


@dataclass(slots=True)
class _Ended:
    at: datetime
    ok: bool


@dataclass
class Health:
    """Runs that reached an end, per schedule; ``columns`` folds each schedule's into one change."""

    ended_runs: dict[uuid.UUID, list[_Ended]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.ended_runs)

    def ended(self, schedule_id: uuid.UUID, status: RunStatus, finished_at: datetime | None) -> None:
        if finished_at is None or (status is not RunStatus.SUCCEEDED and status not in FAILED):
            return
        self.ended_runs.setdefault(schedule_id, []).append(_Ended(finished_at, status is RunStatus.SUCCEEDED))

    def columns(
        self,
    ) -> tuple[list[uuid.UUID], list[int], list[bool], list[datetime | None], list[datetime | None]]:
        """Per schedule, in a fixed lock order: failures after the last success, whether a success reset the
        streak, and the last success and failure times."""
        sids: list[uuid.UUID] = []
        fails: list[int] = []
        resets: list[bool] = []
        ok_at: list[datetime | None] = []
        failed_at: list[datetime | None] = []
        for sid, runs in sorted(self.ended_runs.items()):
            runs.sort(key=lambda r: r.at)
            streak, reset = 0, False
            last_ok: datetime | None = None
            last_failed: datetime | None = None
            for run in runs:
                if run.ok:
                    streak, reset, last_ok = 0, True, run.at
                else:
                    streak, last_failed = streak + 1, run.at
            sids.append(sid)
            fails.append(streak)
            resets.append(reset)
            ok_at.append(last_ok)
            failed_at.append(last_failed)
        return sids, fails, resets, ok_at, failed_at


def failures_toward_pause(streak: int, last_success_at: datetime | None, base: int, base_at: datetime | None) -> int:
    """The failures that count toward a schedule's auto-pause: its streak, less what it already was when the
    schedule was last resumed, unless a success since then restarted the streak (the recorder's SQL says the same)."""
    if base_at is not None and (last_success_at is None or last_success_at < base_at):
        return streak - min(base, streak)
    return streak
