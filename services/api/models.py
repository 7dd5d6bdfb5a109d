"""Request and response bodies. Separate from the tables: the wire contract changes on its own terms."""

from __future__ import annotations

import uuid
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.events.calendar import CalendarDefinition
from shared.events.notifications import NotificationType
from shared.events.runs import SkipReason
from shared.events.schedule import ScheduleDefinition, ScheduleStatus, plain_http_url
from shared.types import Instant

T = TypeVar("T")


class ScheduleCreate(ScheduleDefinition):
    """``POST /api/schedules`` and ``PUT /api/schedules/{id}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Nightly billing export",
                    "labels": {"team": "billing"},
                    "type": "cron",
                    "cron_expr": "0 2 * * *",
                    "timezone": "Europe/Paris",
                    "payload": {
                        "url": "https://api.example.com/hooks/export",
                        "method": "POST",
                        "body": {"report": "daily"},
                        "timeout_seconds": 30,
                    },
                    "retry_policy": {"max_attempts": 5, "backoff": "exponential", "initial_delay_seconds": 1},
                },
                {
                    "name": "Heartbeat",
                    "type": "interval",
                    "interval_seconds": 30,
                    "payload": {"url": "https://api.example.com/hooks/heartbeat"},
                },
            ]
        }
    )


class CalendarCreate(CalendarDefinition):
    """``POST /api/calendars`` and ``PUT /api/calendars/{id}``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Paris business days",
                    "timezone": "Europe/Paris",
                    "exclude_dates": ["2026-12-25", "2027-01-01"],
                    "exclude_weekdays": ["sat", "sun"],
                    "exclude_ranges": [{"from": "2026-12-31T18:00:00Z", "to": "2027-01-01T06:00:00Z"}],
                }
            ]
        }
    )


class CalendarOut(CalendarDefinition):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    tenant_id: str
    version: int
    created_at: Instant
    updated_at: Instant


class ScheduleStats(BaseModel):
    """The schedule's health, kept by the run-history writer as runs end and fires are skipped."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consecutive_failures: int = Field(
        default=0, ge=0, description="Runs that ended failed (dead-lettered) since the last one that succeeded."
    )
    last_success_at: Instant | None = Field(default=None, description="When the last successful run ended.")
    last_failure_at: Instant | None = Field(default=None, description="When the last failed run ended.")
    skipped_total: int = Field(default=0, ge=0, description="Planned fires not run (misfire, overlap, calendar).")
    last_skipped_at: Instant | None = Field(default=None, description="The nominal time of the last skipped fire.")
    last_skip_reason: SkipReason | None = None


class ScheduleOut(ScheduleDefinition):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    tenant_id: str
    status: ScheduleStatus
    version: int
    next_run_at: Instant | None
    last_run_at: Instant | None
    run_count: int
    stats: ScheduleStats
    paused_reason: str | None = Field(
        default=None, description='Set when Chime paused the schedule: "auto: N consecutive failures".'
    )
    created_at: Instant
    updated_at: Instant


class FlowLimitIn(BaseModel):
    """``PUT /api/flow-limits/{flow_key}``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"max_concurrency": 10, "max_per_second": 50.0}]},
    )

    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Calls to the flow in flight at once, across all executors; CHIME_DEFAULT_FLOW_CONCURRENCY"
        " (100 unless set) when left out.",
    )
    max_per_second: float | None = Field(
        default=None,
        gt=0,
        le=100_000,
        description="Calls started per second, across all executors: at most floor(rate) (at least 1) in any"
        " window of floor(rate)/rate seconds. null: no rate limit.",
    )


class FlowLimitOut(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    flow_key: str = Field(
        description="A schedule's payload.flow_key, or the host (with its port, if the URL names one) of its URL."
    )
    max_concurrency: int
    max_per_second: float | None
    version: int
    created_at: Instant
    updated_at: Instant


class NotificationEndpointIn(BaseModel):
    """``POST /api/notification-endpoints`` and ``PUT /api/notification-endpoints/{id}``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://ops.example.com/chime-events",
                    "events": ["schedule.failing", "schedule.recovered", "schedule.auto_paused"],
                    "description": "on-call channel",
                }
            ]
        },
    )

    url: str = Field(max_length=2048, description="Receives each notification as a signed CloudEvent (POST).")
    events: list[NotificationType] = Field(min_length=1, max_length=len(NotificationType))
    description: str | None = Field(default=None, max_length=500)

    @field_validator("url")
    @classmethod
    def _plain_http(cls, value: str) -> str:
        return plain_http_url(value)

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[NotificationType]) -> list[NotificationType]:
        if len(set(value)) != len(value):
            raise ValueError("an event type is named twice")
        return sorted(value)


class NotificationEndpointOut(NotificationEndpointIn):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: uuid.UUID
    version: int
    created_at: Instant
    updated_at: Instant


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class PreviewItem(BaseModel):
    utc: str = Field(examples=["2026-12-01T09:00:00.000Z"])
    local: str = Field(examples=["2026-12-01T10:00:00.000+01:00"])
    planned: str = Field(description="When the call is made: the nominal time plus the schedule's jitter.")
    skipped: SkipReason | None = Field(
        default=None, description="calendar: a calendar excludes this time (listed with include_skipped=true)."
    )


class PreviewOut(BaseModel):
    items: list[PreviewItem]


class AttemptOut(BaseModel):
    attempt: int
    worker: str | None
    started_at: Instant | None
    finished_at: Instant | None
    http_status: int | None
    duration_ms: int | None
    error: str | None
    response_excerpt: str | None


class RunOut(BaseModel):
    id: uuid.UUID
    schedule_id: uuid.UUID
    scheduled_for: Instant
    status: str
    trigger: str
    attempts: list[AttemptOut]
    created_at: Instant
    finished_at: Instant | None


class SigningKeyOut(BaseModel):
    id: str
    secret: str = Field(description="whsec_… secret; verify webhook-signature with it.")
    created_at: Instant
    expires_at: Instant | None


class SigningKeysOut(BaseModel):
    items: list[SigningKeyOut]


class HealthCheck(BaseModel):
    status: str
    latency_ms: float | None = None
    detail: str | None = None


class HealthOut(BaseModel):
    status: str
    checks: dict[str, HealthCheck] = Field(default_factory=dict)
