"""Run events: what the planner asks for (``run.due``) and what the executor reports (``run.*``)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.events.schedule import DeliverySpec, RetryPolicy
from shared.types import Instant

RESPONSE_EXCERPT_LIMIT = 4096


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    RUN_NOW = "run_now"
    REPLAY = "replay"
    BACKFILL = "backfill"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD_LETTERED = "dead_lettered"
    SKIPPED = "skipped"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class AttemptRecord(_Data):
    """One finished attempt, as the DLQ keeps it."""

    attempt: int
    worker: str
    started_at: Instant
    finished_at: Instant
    duration_ms: int
    http_status: int | None = None
    error: str | None = None
    response_excerpt: str | None = Field(default=None, max_length=RESPONSE_EXCERPT_LIMIT)


class RunDueData(_Data):
    """Everything the executor needs to make one call: events are self-contained, so a re-produced record
    replays the same delivery under the same idempotency key."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    schedule_version: int
    nominal_time: Instant = Field(description="The run's identity; sent as Chime-Scheduled-For.")
    planned_time: Instant = Field(description="When to call: the nominal time plus jitter.")
    attempt: int = Field(default=1, ge=1)
    trigger: Trigger = Trigger.SCHEDULE
    delivery: DeliverySpec
    retry_policy: RetryPolicy
    final: bool = Field(default=False, description="The schedule's last planned run: it completes after it.")
    not_before: Instant | None = Field(default=None, description="A retry waits until then.")
    budget_start_attempt: int = Field(
        default=1, ge=1, description="First attempt of the current retry budget (a replay starts a fresh one)."
    )
    age_from: Instant | None = Field(
        default=None, description="max_event_age_seconds counts from here (a replay's or backfill's request)."
    )
    history: list[AttemptRecord] = Field(default_factory=list, description="Earlier attempts of this run.")
    report_finish: bool = Field(
        default=False,
        description="The planner holds the schedule back until this run ends (overlap skip or buffer_one): the"
        " executor reports its end on chime.planner.commands.",
    )

    @property
    def age_origin(self) -> datetime:
        return self.age_from or self.nominal_time

    @property
    def attempts_used(self) -> int:
        return self.attempt - self.budget_start_attempt + 1


class RunCancelledData(_Data):
    """A run that was announced ahead of its time and must not be called (pause, delete or edit in the window)."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    nominal_time: Instant
    reason: str


class RunFinishedData(_Data):
    """A planned run that held its schedule back (overlap skip or buffer_one) has ended, for good."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    status: RunStatus


class RunOutcomeData(_Data):
    """The outcome of one attempt."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    nominal_time: Instant
    trigger: Trigger
    attempt: int
    status: RunStatus = Field(description="The run's status after this attempt.")
    worker: str
    started_at: Instant
    finished_at: Instant
    duration_ms: int
    http_status: int | None = None
    error: str | None = None
    response_excerpt: str | None = Field(default=None, max_length=RESPONSE_EXCERPT_LIMIT)
    reason: str | None = Field(default=None, description="Why the run is dead, for dead_lettered.")
    next_attempt_at: Instant | None = Field(default=None, description="When the next attempt may run, if retrying.")

    def record(self) -> AttemptRecord:
        return AttemptRecord(
            attempt=self.attempt,
            worker=self.worker,
            started_at=self.started_at,
            finished_at=self.finished_at,
            duration_ms=self.duration_ms,
            http_status=self.http_status,
            error=self.error,
            response_excerpt=self.response_excerpt,
        )


class DlqEntryData(_Data):
    """A dead run: the last ``run.due`` it was delivered from, every attempt, and why it died."""

    run: RunDueData
    attempts: list[AttemptRecord]
    reason: str
    dead_at: Instant


class ReplayCommandData(_Data):
    """Ask the DLQ service to deliver a dead run again (same run id, fresh attempt budget)."""

    entry_id: uuid.UUID
    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    requested_at: Instant


class SkipReason(StrEnum):
    MISFIRE = "misfire"
    OVERLAP = "overlap"
    CALENDAR = "calendar"


class RunSkippedData(_Data):
    """Planned fires that were not run: one event per schedule and outage (misfire) or per fire (overlap)."""

    schedule_id: uuid.UUID
    tenant_id: str
    reason: SkipReason
    count: int = Field(ge=1)
    first_nominal: Instant
    last_nominal: Instant
    run_id: uuid.UUID | None = Field(default=None, description="The skipped run, for a single skip (overlap).")
    schedule_version: int | None = None
    final: bool = Field(default=False, description="Nothing is left to fire: the schedule completes.")
