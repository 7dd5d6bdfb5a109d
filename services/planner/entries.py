"""What the planner keeps per schedule, and how events move it. Pure: no Kafka, no clock reads."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.events.schedule import MisfirePolicy, OverlapPolicy, ScheduleState, ScheduleStatus, plan_spec
from shared.runid import planned_run_id
from shared.schedule import FireTime, iter_fires, next_fire_after
from shared.types import Instant

_MS = timedelta(milliseconds=1)
# How long announced runs are remembered (longer than the longest look-ahead, 10 s) and how many at most.
# Every fire stores them with the cursor, so a short memory keeps the per-fire write small.
_ANNOUNCED_MEMORY = timedelta(seconds=15)
_ANNOUNCED_MAX = 100
# Fields whose change re-plans the next fire; any other edit keeps the pending fire where it is.
TIMING_FIELDS = (
    "type",
    "cron_expr",
    "interval_seconds",
    "run_at",
    "timezone",
    "start_at",
    "end_at",
    "max_runs",
    "jitter_seconds",
    "status",
)


class Announced(BaseModel):
    """A run already published ahead of its planned time; a change inside that window must cancel it."""

    model_config = ConfigDict(frozen=True)

    run_id: uuid.UUID
    nominal: Instant
    planned: Instant


class _Progress(BaseModel):
    """What moves as a schedule fires; shared by the in-memory entry and the stored cursor."""

    model_config = ConfigDict(frozen=True)

    next_nominal: Instant | None = None
    next_planned: Instant | None = None
    run_count: int = 0
    last_nominal: Instant | None = None
    # Runs published ahead of their planned time and perhaps not called yet; a change may cancel them.
    announced: list[Announced] = Field(default_factory=list)
    # Overlap control (policies skip and buffer_one): the planned run still unfinished, retries included,
    # and at most one fire held back until it finishes.
    open_run: uuid.UUID | None = None
    open_nominal: Instant | None = None
    buffered: FireTime | None = None

    def progress(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _Progress.model_fields}


class PlanEntry(_Progress):
    """One schedule's planner state: its definition and its progress."""

    schedule: ScheduleState

    @property
    def version(self) -> int:
        return self.schedule.version

    def next_fire(self) -> FireTime | None:
        if self.next_nominal is None or self.next_planned is None:
            return None
        return FireTime(nominal=self.next_nominal, planned=self.next_planned)


class Cursor(_Progress):
    """What changes as a schedule fires: a ``PlanEntry`` without its definition.

    The planner stores it apart from the schedule's definition, so a fire writes a few hundred bytes instead
    of re-serializing the whole schedule. ``version`` is the definition version it was planned for.
    """

    version: int


def cursor_of(entry: PlanEntry) -> Cursor:
    return Cursor.model_construct(version=entry.version, **entry.progress())


def join(state: ScheduleState, cursor: Cursor | None) -> PlanEntry:
    """The entry from a stored definition and cursor.

    The two are written one after the other, so a crash can leave the cursor planned for an older version (or
    missing): the entry is then re-planned from the change, as an upsert would have done.
    """
    if cursor is None:
        fresh, _ = apply_upsert(None, state, state.updated_at)
        assert fresh is not None  # noqa: S101 - apply_upsert always plans a new entry
        return fresh
    entry = PlanEntry.model_construct(schedule=state, **cursor.progress())
    if cursor.version >= state.version:
        return entry
    if state.status is ScheduleStatus.DELETED:
        return _with_next(entry, None, announced=[])
    after = state.updated_at
    if entry.last_nominal is not None and entry.last_nominal > after:
        after = entry.last_nominal
    return _with_next(entry, _plan_after(state, after, entry.run_count))


def _plan_after(state: ScheduleState, after: datetime, run_count: int) -> FireTime | None:
    if state.status is not ScheduleStatus.ACTIVE:
        return None
    return next_fire_after(plan_spec(state, state.id, state.created_at), after, run_count)


def _with_next(entry: PlanEntry, fire: FireTime | None, **changes: object) -> PlanEntry:
    return entry.model_copy(
        update={
            "next_nominal": fire.nominal if fire else None,
            "next_planned": fire.planned if fire else None,
            **changes,
        }
    )


def _withdraw(entry: PlanEntry, now: datetime) -> tuple[PlanEntry, list[Announced]]:
    """Take back every announced run whose time has not come: they are cancelled and no longer counted."""
    pending = [a for a in entry.announced if a.planned > now]
    if not pending:
        return entry, []
    kept = [a for a in entry.announced if a.planned <= now]
    last = max((a.nominal for a in kept), default=None)
    if last is None and entry.last_nominal is not None:
        earliest = min(a.nominal for a in pending)
        last = entry.last_nominal if entry.last_nominal < earliest else None
    withdrawn = entry.model_copy(
        update={"announced": kept, "run_count": max(0, entry.run_count - len(pending)), "last_nominal": last}
    )
    return withdrawn, pending


def apply_upsert(
    entry: PlanEntry | None, state: ScheduleState, now: datetime
) -> tuple[PlanEntry | None, list[Announced]]:
    """The entry after an upsert event, and the announced runs to cancel.

    Returns the entry unchanged for a stale version. A re-plan starts after the change was made
    (``updated_at``), not after the planner saw it, so a lagging planner still fires what was due meanwhile.
    """
    if entry is not None and state.version <= entry.version:
        return entry, []
    if entry is None:
        fire = _plan_after(state, state.updated_at - _MS, 0)
        fresh = PlanEntry(schedule=state)
        return _with_next(fresh, fire), []
    timing_changed = any(getattr(entry.schedule, f) != getattr(state, f) for f in TIMING_FIELDS)
    updated = entry.model_copy(update={"schedule": state})
    if not timing_changed and state.status is ScheduleStatus.ACTIVE:
        return updated, []
    updated, cancels = _withdraw(updated, now)
    after = state.updated_at
    if updated.last_nominal is not None and updated.last_nominal > after:
        after = updated.last_nominal
    fire = _plan_after(state, after, updated.run_count)
    return _with_next(updated, fire), cancels


def apply_delete(entry: PlanEntry | None, version: int, now: datetime) -> tuple[PlanEntry | None, list[Announced]]:
    """The entry after a delete, and an announced run to cancel.

    The entry stays as a marker (status ``deleted``, no next fire), so a duplicate of an older upsert that
    arrives later cannot bring the schedule back.
    """
    if entry is None or version <= entry.version:
        return entry, []
    marker = entry.schedule.model_copy(update={"status": ScheduleStatus.DELETED, "version": version})
    withdrawn, cancels = _withdraw(entry.model_copy(update={"schedule": marker}), now)
    return _with_next(withdrawn, None, announced=[]), cancels


def advance(entry: PlanEntry, fired: FireTime, run_id: uuid.UUID | None = None) -> PlanEntry:
    """The entry after ``fired`` was published: count it and plan the next one. ``run_id`` is the fire's
    (``planned_run_id``), when the caller has worked it out already."""
    run_count = entry.run_count + 1
    fire = next_fire_after(
        plan_spec(entry.schedule, entry.schedule.id, entry.schedule.created_at), fired.nominal, run_count
    )
    announced = Announced(
        run_id=run_id or planned_run_id(entry.schedule.id, fired.nominal), nominal=fired.nominal, planned=fired.planned
    )
    # Runs whose time has passed can no longer be cancelled; forget them.
    recent = [a for a in entry.announced if a.planned > fired.planned - _ANNOUNCED_MEMORY][-_ANNOUNCED_MAX:]
    return _with_next(entry, fire, run_count=run_count, last_nominal=fired.nominal, announced=[*recent, announced])


def fire_is_current(entry: PlanEntry | None, version: int, nominal: datetime) -> bool:
    """Whether a heap item (``version``, ``nominal``) is still the entry's next fire; stale items are dropped."""
    return (
        entry is not None
        and entry.version == version
        and entry.schedule.status is ScheduleStatus.ACTIVE
        and entry.next_nominal == nominal
    )


# fire_all runs at most this many missed times after an outage (the most recent ones); the rest are
# reported as skipped. A day of a 1 s schedule must not become 86,400 calls at once.
FIRE_ALL_BOUND = 100
# How many missed times the planner looks at, at most, for one schedule and outage.
MISFIRE_SCAN_LIMIT = 100_000


class MisfirePlan(BaseModel):
    """What to do with the fires that fell due while the planner (or Kafka) was down."""

    model_config = ConfigDict(frozen=True)

    fire: list[FireTime]
    skipped_count: int = 0
    skipped_first: Instant | None = None
    skipped_last: Instant | None = None
    last_considered: Instant


def plan_misfire(entry: PlanEntry, now: datetime) -> MisfirePlan | None:
    """None when the entry's next fire is within ``misfire_grace_seconds`` (fire it normally).

    Otherwise every fire later than the grace period is a misfire, handled by ``misfire_policy``:
    ``fire_once`` runs the latest of them, ``fire_all`` runs each in order (at most ``FIRE_ALL_BOUND``, the
    most recent), ``skip`` runs none. The ones not run are reported once, as a count with the first and last.
    """
    first = entry.next_fire()
    if first is None:
        return None
    grace = timedelta(seconds=entry.schedule.misfire_grace_seconds)
    if now - first.planned <= grace:
        return None
    spec = plan_spec(entry.schedule, entry.schedule.id, entry.schedule.created_at)
    missed: list[FireTime] = []
    # Fires already due but still within the grace period run with the catch-up, decided now: left for a later
    # turn, a few milliseconds could carry one past the grace and report the same outage twice.
    due_now: list[FireTime] = []
    for fire in iter_fires(spec, first.nominal - _MS, entry.run_count):
        if len(missed) + len(due_now) >= MISFIRE_SCAN_LIMIT:
            break
        if now - fire.planned <= grace:
            if fire.planned > now:
                break
            due_now.append(fire)
            continue
        missed.append(fire)
    policy = entry.schedule.misfire_policy
    if policy == MisfirePolicy.FIRE_ONCE:
        to_fire, skipped = missed[-1:], missed[:-1]
    elif policy == MisfirePolicy.FIRE_ALL:
        to_fire, skipped = missed[-FIRE_ALL_BOUND:], missed[:-FIRE_ALL_BOUND]
    else:
        to_fire, skipped = [], missed
    return MisfirePlan(
        fire=to_fire + due_now,
        skipped_count=len(skipped),
        skipped_first=skipped[0].nominal if skipped else None,
        skipped_last=skipped[-1].nominal if skipped else None,
        last_considered=(due_now or missed)[-1].nominal,
    )


def advance_past(entry: PlanEntry, last_considered: datetime, fired: int) -> PlanEntry:
    """The entry after a misfire was handled: ``fired`` runs counted, planning resumes after ``last_considered``."""
    run_count = entry.run_count + fired
    spec = plan_spec(entry.schedule, entry.schedule.id, entry.schedule.created_at)
    fire = next_fire_after(spec, last_considered, run_count)
    return _with_next(entry, fire, run_count=run_count, last_nominal=last_considered)


class Overlap(StrEnum):
    FIRE = "fire"
    SKIP = "skip"
    BUFFER = "buffer"


# An open run with no outcome for this long past its event-age budget is taken as finished, so a lost
# result cannot stop a schedule for good.
_OPEN_RUN_SLACK = timedelta(minutes=5)


def overlap_decision(entry: PlanEntry, now: datetime) -> Overlap:
    policy = entry.schedule.overlap_policy
    if policy == OverlapPolicy.ALLOW or entry.open_run is None or entry.open_nominal is None:
        return Overlap.FIRE
    budget = timedelta(seconds=entry.schedule.retry_policy.max_event_age_seconds) + _OPEN_RUN_SLACK
    if now - entry.open_nominal > budget:
        return Overlap.FIRE
    if policy == OverlapPolicy.BUFFER_ONE and entry.buffered is None:
        return Overlap.BUFFER
    return Overlap.SKIP


def overlap_wait(entry: PlanEntry, now: datetime) -> datetime | None:
    """When a fire announced ahead would be skipped or buffered only because its schedule's run is still open: its
    planned time, so the decision is taken then; the run may end before it. None when it can be decided now."""
    nxt = entry.next_fire()
    if nxt is None or nxt.planned <= now or overlap_decision(entry, now) is Overlap.FIRE:
        return None
    return nxt.planned


def skip_over(entry: PlanEntry, fire: FireTime, *, buffer: bool) -> PlanEntry:
    """Move past ``fire`` without running it now (skipped, or held as the one buffered fire)."""
    spec = plan_spec(entry.schedule, entry.schedule.id, entry.schedule.created_at)
    nxt = next_fire_after(spec, fire.nominal, entry.run_count + (1 if buffer else 0))
    return _with_next(entry, nxt, last_nominal=fire.nominal, buffered=fire if buffer else entry.buffered)


def opened(entry: PlanEntry, run_id: uuid.UUID, nominal: datetime) -> PlanEntry:
    if entry.schedule.overlap_policy == OverlapPolicy.ALLOW:
        return entry
    return entry.model_copy(update={"open_run": run_id, "open_nominal": nominal})


def finished(entry: PlanEntry, run_id: uuid.UUID) -> tuple[PlanEntry, FireTime | None]:
    """The entry after its open run ended, and the buffered fire to run now (if any)."""
    if entry.open_run != run_id:
        return entry, None
    buffered = entry.buffered
    cleared = entry.model_copy(update={"open_run": None, "open_nominal": None, "buffered": None})
    if buffered is not None:
        cleared = cleared.model_copy(update={"run_count": entry.run_count + 1})
    return cleared, buffered
