"""Run events: what the planner asks for (``run.due``) and what the executor reports (``run.*``)."""

from __future__ import annotations

import uuid
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
    not_before: Instant | None = None


class RunCancelledData(_Data):
    """A run that was announced ahead of its time and must not be called (pause, delete or edit in the window)."""

    run_id: uuid.UUID
    schedule_id: uuid.UUID
    tenant_id: str
    nominal_time: Instant
    reason: str


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
