"""What one due fire turns into: the runs to publish, the skips to report, and the entry afterwards.

Pure: the caller passes the clock, publishes the events, and stores the entry only after the broker
acknowledged them, so a crash in between repeats a fire under the same run id and never loses one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from services.planner.entries import (
    Overlap,
    PlanEntry,
    advance,
    advance_past,
    finished,
    opened,
    overlap_decision,
    plan_misfire,
    skip_over,
)
from shared.events.calendar import excluded_by
from shared.events.runs import RunDueData, RunSkippedData, SkipReason, Trigger
from shared.events.schedule import OverlapPolicy
from shared.runid import planned_run_id
from shared.schedule import FireTime


@dataclass(slots=True)
class Firing:
    after: PlanEntry
    due: list[RunDueData] = field(default_factory=list)
    skipped: list[RunSkippedData] = field(default_factory=list)


def due_data(entry: PlanEntry, fire: FireTime, *, final: bool, run_id: uuid.UUID | None = None) -> RunDueData:
    state = entry.schedule
    return RunDueData(
        run_id=run_id or planned_run_id(state.id, fire.nominal),
        schedule_id=state.id,
        tenant_id=state.tenant_id,
        schedule_version=state.version,
        nominal_time=fire.nominal,
        planned_time=fire.planned,
        trigger=Trigger.SCHEDULE,
        delivery=state.payload,
        retry_policy=state.retry_policy,
        final=final,
        report_finish=state.overlap_policy is not OverlapPolicy.ALLOW,
    )


def skipped_data(
    entry: PlanEntry,
    reason: SkipReason,
    count: int,
    first: datetime,
    last: datetime,
    *,
    final: bool,
    run_id: uuid.UUID | None = None,
) -> RunSkippedData:
    state = entry.schedule
    return RunSkippedData(
        schedule_id=state.id,
        tenant_id=state.tenant_id,
        reason=reason,
        count=count,
        first_nominal=first,
        last_nominal=last,
        run_id=run_id,
        schedule_version=state.version,
        final=final,
    )


def fire(entry: PlanEntry, now: datetime) -> Firing:
    """The entry's next fire, due now: run it, or handle it as a misfire or an overlap."""
    nxt = entry.next_fire()
    if nxt is None:
        return Firing(entry)
    misfire = plan_misfire(entry, now)
    if misfire is not None:
        calendars = entry.schedule.calendars
        runs = [f for f in misfire.fire if not calendars or excluded_by(calendars, f.nominal) is None]
        excluded = [f for f in misfire.fire if f not in runs]
        after = advance_past(entry, misfire.last_considered, len(runs))
        done = after.next_nominal is None
        out = Firing(after)
        for missed in excluded:
            run_id = planned_run_id(entry.schedule.id, missed.nominal)
            out.skipped.append(
                skipped_data(
                    entry,
                    SkipReason.CALENDAR,
                    1,
                    missed.nominal,
                    missed.nominal,
                    final=done and not runs and not misfire.skipped_count and missed is excluded[-1],
                    run_id=run_id,
                )
            )
        for n, missed in enumerate(runs, 1):
            out.due.append(due_data(entry, missed, final=done and n == len(runs)))
            out.after = opened(out.after, planned_run_id(entry.schedule.id, missed.nominal), missed.nominal)
        if misfire.skipped_count and misfire.skipped_first and misfire.skipped_last:
            out.skipped.append(
                skipped_data(
                    entry,
                    SkipReason.MISFIRE,
                    misfire.skipped_count,
                    misfire.skipped_first,
                    misfire.skipped_last,
                    final=done and not runs,
                )
            )
        return out
    if entry.schedule.calendars and excluded_by(entry.schedule.calendars, nxt.nominal) is not None:
        # Not run and not counted towards max_runs: the plan moves on as if the time were not in it.
        after = skip_over(entry, nxt, buffer=False)
        skip = skipped_data(
            entry,
            SkipReason.CALENDAR,
            1,
            nxt.nominal,
            nxt.nominal,
            final=after.next_nominal is None and after.buffered is None,
            run_id=planned_run_id(entry.schedule.id, nxt.nominal),
        )
        return Firing(after, skipped=[skip])
    decision = overlap_decision(entry, now)
    if decision is Overlap.FIRE:
        run_id = planned_run_id(entry.schedule.id, nxt.nominal)
        after = advance(entry, nxt, run_id)
        run = due_data(entry, nxt, final=after.next_nominal is None, run_id=run_id)
        return Firing(opened(after, run_id, nxt.nominal), due=[run])
    after = skip_over(entry, nxt, buffer=decision is Overlap.BUFFER)
    if decision is Overlap.BUFFER:
        return Firing(after)
    skip = skipped_data(
        entry,
        SkipReason.OVERLAP,
        1,
        nxt.nominal,
        nxt.nominal,
        final=after.next_nominal is None and after.buffered is None,
        run_id=planned_run_id(entry.schedule.id, nxt.nominal),
    )
    return Firing(after, skipped=[skip])


def finish(entry: PlanEntry, run_id: uuid.UUID, now: datetime) -> Firing:
    """The entry after its open run ended: a buffered fire (buffer_one) runs now."""
    after, buffered = finished(entry, run_id)
    if buffered is None:
        return Firing(after)
    late = FireTime(nominal=buffered.nominal, planned=max(buffered.planned, now))
    run = due_data(entry, late, final=after.next_nominal is None)
    return Firing(opened(after, run.run_id, buffered.nominal), due=[run])
