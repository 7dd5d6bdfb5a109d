"""The schedule as it travels on ``chime.schedules``, and the value types it is made of."""

from __future__ import annotations

import json
import uuid
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.events.calendar import CalendarRules
from shared.schedule import PlanSpec, ScheduleType
from shared.types import Instant

MAX_BODY_BYTES = 64 * 1024
MAX_HEADERS = 50
FLOW_KEY_MAX = 200
HOP_BY_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
# Headers Chime sets itself on every delivery; a schedule may not forge them.
RESERVED_HEADER_PREFIXES = ("webhook-", "chime-")
RESERVED_HEADERS = frozenset({"idempotency-key", "user-agent"})


@lru_cache(maxsize=4096)
def plain_http_url(value: str) -> str:
    """``value`` if it is an http(s) URL with a host, a valid port and no credentials; else ValueError.

    Cached: every run event carries its schedule's URL and is validated by each service that reads it in full, and
    schedules fire the same URL over and over (a rejected URL raises again, uncached)."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https"):
        raise ValueError("url must be http or https")
    if not parts.hostname:
        raise ValueError("url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url must not carry credentials")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("url has an invalid port") from exc
    return value


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ScheduleStatus(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    COMPLETED = "completed"
    DELETED = "deleted"


class MisfirePolicy(StrEnum):
    FIRE_ONCE = "fire_once"
    FIRE_ALL = "fire_all"
    SKIP = "skip"


class OverlapPolicy(StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    BUFFER_ONE = "buffer_one"


class BackoffKind(StrEnum):
    EXPONENTIAL = "exponential"
    LINEAR = "linear"
    FIXED = "fixed"


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


class DeliverySpec(Frozen):
    """What a fire does: one HTTP call."""

    url: str = Field(max_length=2048)
    method: HttpMethod = HttpMethod.POST
    headers: dict[str, str] = Field(default_factory=dict)
    body: Any = None
    timeout_seconds: float = Field(default=30, ge=1, le=300)
    flow_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=FLOW_KEY_MAX,
        description="The flow whose limits this call counts against (GET/PUT /api/flow-limits/{flow_key});"
        " the URL's host and port when not set.",
    )

    @property
    def flow(self) -> str:
        """The flow this call belongs to: ``flow_key``, else the URL's host with its port, if one is given."""
        return self.flow_key if self.flow_key is not None else urlsplit(self.url).netloc.lower()

    @field_validator("url")
    @classmethod
    def _url_is_plain_http(cls, value: str) -> str:
        return plain_http_url(value)

    @field_validator("headers")
    @classmethod
    def _headers_are_sane(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_HEADERS:
            raise ValueError(f"at most {MAX_HEADERS} headers")
        for name in value:
            lower = name.lower()
            if not name or any(c in name for c in " \t\r\n:") or not name.isascii():
                raise ValueError(f"invalid header name {name!r}")
            if lower in HOP_BY_HOP_HEADERS:
                raise ValueError(f"hop-by-hop header {name!r} is not allowed")
            if lower in RESERVED_HEADERS or lower.startswith(RESERVED_HEADER_PREFIXES):
                raise ValueError(f"header {name!r} is set by Chime")
        for header_value in value.values():
            if "\r" in header_value or "\n" in header_value:
                raise ValueError("header values cannot contain line breaks")
        return value

    @field_validator("body")
    @classmethod
    def _body_fits(cls, value: Any) -> Any:
        if value is not None and len(json.dumps(value, separators=(",", ":")).encode()) > MAX_BODY_BYTES:
            raise ValueError(f"body is larger than {MAX_BODY_BYTES} bytes")
        return value


class RetryPolicy(Frozen):
    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff: BackoffKind = BackoffKind.EXPONENTIAL
    initial_delay_seconds: float = Field(default=1, ge=0, le=86_400)
    max_delay_seconds: float = Field(default=3600, ge=0, le=7 * 86_400)
    multiplier: float = Field(default=2.0, ge=1.0, le=100.0)
    max_event_age_seconds: int = Field(default=86_400, ge=1, le=30 * 86_400)
    jitter: bool = True

    @model_validator(mode="after")
    def _delays_ordered(self) -> RetryPolicy:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("max_delay_seconds is below initial_delay_seconds")
        return self


class ScheduleDefinition(Frozen):
    """The user-writable part of a schedule."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=2000)] = ""
    labels: dict[Annotated[str, Field(max_length=63)], Annotated[str, Field(max_length=256)]] = Field(
        default_factory=dict, max_length=64
    )
    type: ScheduleType
    cron_expr: str | None = Field(default=None, max_length=200)
    interval_seconds: int | None = None
    run_at: Instant | None = None
    timezone: str = "UTC"
    start_at: Instant | None = None
    end_at: Instant | None = None
    max_runs: int | None = Field(default=None, ge=1)
    jitter_seconds: int = Field(default=0, ge=0, le=86_400)
    misfire_policy: MisfirePolicy = MisfirePolicy.FIRE_ONCE
    misfire_grace_seconds: int = Field(default=60, ge=0, le=86_400)
    overlap_policy: OverlapPolicy = OverlapPolicy.ALLOW
    payload: DeliverySpec
    retry_policy: RetryPolicy = Field(default_factory=RetryPolicy)
    calendar_ids: Annotated[list[uuid.UUID], Field(max_length=5)] = Field(
        default_factory=list,
        description="Exclusion calendars of the tenant: a fire they exclude is skipped (reason calendar).",
    )
    auto_pause_after_failures: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Pause the schedule after this many runs in a row ended failed (dead-lettered); null: never."
        " A resumed schedule that goes on failing is paused again after as many more.",
    )
    alert_after_failures: int | None = Field(
        default=3,
        ge=1,
        le=10_000,
        description="Send schedule.failing to the tenant's notification endpoints when this many runs in a row"
        " ended failed (dead-lettered), and schedule.recovered at the next success; null: never.",
    )

    @field_validator("calendar_ids")
    @classmethod
    def _distinct_calendars(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a calendar is named twice")
        return value


class ScheduleState(ScheduleDefinition):
    """The full schedule, as ``dev.chime.schedule.upserted.v1`` carries it."""

    id: uuid.UUID
    tenant_id: str
    status: ScheduleStatus
    version: int = Field(ge=1)
    created_at: Instant
    updated_at: Instant
    calendars: list[CalendarRules] = Field(
        default_factory=list, description="The calendars named by calendar_ids, as they were at this version."
    )
    paused_reason: str | None = Field(
        default=None, description="Why Chime paused the schedule (auto-pause); null when a user paused it."
    )


class ScheduleDeletedData(Frozen):
    id: uuid.UUID
    tenant_id: str
    version: int = Field(ge=1)
    deleted_at: Instant


class StoppedVersion(Frozen):
    schedule_id: uuid.UUID
    schedule_version: int = Field(ge=1)


class ScheduleStoppedData(Frozen):
    """Schedules paused or deleted at these versions: runs the planner announced for an earlier version must not be
    called. Sent by the API with the change itself, on ``chime.runs.due``, so executors stop those runs without
    waiting for the planner to apply the change. One record carries the schedules of a change that share a
    partition (a bulk change of thousands is a record per partition); its key is the first one's id, so it lands
    on the partition that carries all of their runs."""

    tenant_id: str
    status: Literal["paused", "deleted"]
    stopped_at: Instant
    schedules: list[StoppedVersion] = Field(min_length=1)


ScheduleTypeLiteral = Literal["cron", "interval", "oneoff"]


def plan_spec(definition: ScheduleDefinition, schedule_id: uuid.UUID, created_at: Instant) -> PlanSpec:
    """The planning view of a schedule: the one input to ``shared.schedule``."""
    return PlanSpec(
        schedule_id=schedule_id,
        type=definition.type,
        created_at=created_at,
        timezone=definition.timezone,
        cron_expr=definition.cron_expr,
        interval_seconds=definition.interval_seconds,
        run_at=definition.run_at,
        start_at=definition.start_at,
        end_at=definition.end_at,
        max_runs=definition.max_runs,
        jitter_seconds=definition.jitter_seconds,
    )
