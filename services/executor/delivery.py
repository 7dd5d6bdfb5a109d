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
# A request signed ahead of its call is sent as it is while its ``webhook-timestamp`` is at most this old (or this
# far ahead); a call held up longer is signed again. Receivers accept minutes (Standard Webhooks: 5).
SIGNED_AHEAD_TOLERANCE_S = 5


@dataclass(frozen=True, slots=True)
class PreparedCall:
    """A call's request, built and signed before its time so the instant itself only sends it."""

    payload: bytes
    timestamp: int
    secrets: list[str]


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


def prepare(client: HttpClient, due: RunDueData, secrets: list[str], timestamp: int) -> PreparedCall | None:
    """The request for ``due`` signed with ``timestamp`` (its planned second); None when it cannot be built."""
    if not secrets:
        return None
    body = request_body(due)
    headers = request_headers(due, body, secrets, timestamp)
    try:
        payload = client.build(due.delivery.method.value, due.delivery.url, headers, body)
    except InvalidRequest:
        return None  # the call reports it, with the reason
    return PreparedCall(payload, timestamp, secrets)


def _payload(client: HttpClient, due: RunDueData, secrets: list[str], prepared: PreparedCall | None) -> bytes:
    now = time.time()
    if (
        prepared is not None
        and abs(now - prepared.timestamp) <= SIGNED_AHEAD_TOLERANCE_S
        and prepared.secrets == secrets
    ):
        return prepared.payload
    body = request_body(due)
    headers = request_headers(due, body, secrets, int(now))
    return client.build(due.delivery.method.value, due.delivery.url, headers, body)


async def call(
    client: HttpClient, due: RunDueData, secrets: list[str], prepared: PreparedCall | None = None
) -> CallResult:
    """One attempt; ``prepared`` is sent as it is while its signature is recent and its keys are still the tenant's."""
    start = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - start) * 1000)

    delivery = due.delivery
    try:
        payload = _payload(client, due, secrets, prepared)
        response = await client.send(delivery.url, payload, deadline_s=delivery.timeout_seconds)
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
