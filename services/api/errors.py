"""Domain errors the API raises; ``problems.py`` maps each to an RFC 9457 response."""

from __future__ import annotations

from typing import ClassVar

from shared.errors import ChimeError


class ApiError(ChimeError):
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"
    slug: ClassVar[str] = "bad-request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class Unauthorized(ApiError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class MissingScope(ApiError):
    status, title, slug = 403, "Missing scope", "missing-scope"


class NotFound(ApiError, LookupError):
    status, title, slug = 404, "Not found", "not-found"


class ScheduleNotFound(NotFound):
    slug = "schedule-not-found"


class RunNotFound(NotFound):
    slug = "run-not-found"


class CalendarNotFound(NotFound):
    slug = "calendar-not-found"


class FlowLimitNotFound(NotFound):
    slug = "flow-limit-not-found"


class NotificationEndpointNotFound(NotFound):
    slug = "notification-endpoint-not-found"


class CalendarInUse(ApiError):
    status, title, slug = 409, "Calendar in use", "calendar-in-use"


class DlqEntryNotFound(NotFound):
    slug = "dlq-entry-not-found"


class InvalidTransition(ApiError):
    status, title, slug = 409, "Invalid state transition", "invalid-transition"


class VersionMismatch(ApiError):
    status, title, slug = 412, "Precondition failed", "version-mismatch"


class IdempotencyKeyReused(ApiError):
    status, title, slug = 422, "Idempotency key reused", "idempotency-key-reused"


class QuotaExceeded(ApiError):
    status, title, slug = 429, "Quota exceeded", "quota-exceeded"


class RateLimited(ApiError):
    status, title, slug = 429, "Too many requests", "rate-limited"
    retryable = True


class FireRateExceeded(ApiError):
    status, title, slug = 429, "Fire rate exceeded", "fire-rate-exceeded"
