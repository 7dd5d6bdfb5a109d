"""One webhook call: the request Chime sends, and what it makes of the answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from shared.events.runs import RESPONSE_EXCERPT_LIMIT, RunDueData
from shared.httpclient import HttpClient, HttpError, InvalidRequest
from shared.resolver import BlockedTarget, GuardedResolver
from shared.timefmt import format_utc
from shared.version import chime_version
from shared.webhook_signing import sign

RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    http_status: int | None
    error: str | None
    response_excerpt: str | None
    duration_ms: int
    retryable: bool = False
    retry_after_seconds: float | None = None


def is_retryable_status(status: int) -> bool:
    """408, 425, 429 and 5xx may succeed later; any other non-2xx (redirects included) will not."""
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def request_body(due: RunDueData) -> bytes:
    if due.delivery.body is None or due.delivery.method.value == "GET":
        return b""
    return json.dumps(due.delivery.body, separators=(",", ":")).encode()


def request_headers(due: RunDueData, body: bytes, secrets: list[str], timestamp: int) -> dict[str, str]:
    run_id = str(due.run_id)
    headers = dict(due.delivery.headers)
    headers.update(
        {
            "webhook-id": run_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(run_id, timestamp, body, secrets),
            "Idempotency-Key": run_id,
            "Chime-Schedule-Id": str(due.schedule_id),
            "Chime-Scheduled-For": format_utc(due.nominal_time),
            "Chime-Attempt": str(due.attempt),
        }
    )
    if body and not any(name.lower() == "content-type" for name in due.delivery.headers):
        headers["Content-Type"] = "application/json"
    return headers


def build_client(*, allow_private: bool, concurrency: int) -> HttpClient:
    """One client for every call, with the SSRF guard in its resolver.

    It keeps as many idle connections per target as calls may run at once, so a burst to one target reuses
    its connections instead of opening and closing one per call above a smaller pool.
    """
    return HttpClient(
        GuardedResolver(allow_private=allow_private),
        excerpt_limit=RESPONSE_EXCERPT_LIMIT,
        user_agent=f"Chime/{chime_version()}",
        max_idle_per_target=concurrency,
    )


async def call(client: HttpClient, due: RunDueData, secrets: list[str]) -> CallResult:
    body = request_body(due)
    headers = request_headers(due, body, secrets, int(time.time()))
    start = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - start) * 1000)

    delivery = due.delivery
    try:
        response = await client.request(
            delivery.method.value, delivery.url, headers, body, deadline_s=delivery.timeout_seconds
        )
    except BlockedTarget as exc:
        return CallResult(False, None, f"blocked target: {exc}", None, elapsed())
    except InvalidRequest as exc:
        return CallResult(False, None, f"invalid request: {exc}", None, elapsed())
    except TimeoutError:
        return CallResult(
            False, None, f"timed out after {delivery.timeout_seconds:g}s", None, elapsed(), retryable=True
        )
    except (HttpError, OSError) as exc:
        return CallResult(False, None, f"{type(exc).__name__}: {exc}"[:500], None, elapsed(), retryable=True)
    status = response.status
    ok = 200 <= status < 300
    # Keep the excerpt within 4 KiB of characters even after replacement characters.
    text = response.excerpt.decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_LIMIT]
    return CallResult(
        ok=ok,
        http_status=status,
        error=None if ok else f"HTTP {status}",
        response_excerpt=text or None,
        duration_ms=elapsed(),
        retryable=not ok and is_retryable_status(status),
        retry_after_seconds=None if ok else parse_retry_after(response.retry_after, time.time()),
    )
