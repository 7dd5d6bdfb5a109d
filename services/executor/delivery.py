"""One webhook call: the request Chime sends, and what it makes of the answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import aiohttp

from services.executor.ssrf import BlockedTarget, check_connect_target
from shared.events.runs import RESPONSE_EXCERPT_LIMIT, RunDueData
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
            "User-Agent": f"Chime/{chime_version()}",
        }
    )
    if body:
        headers["Content-Type"] = "application/json"
    return headers


def build_session(concurrency: int) -> aiohttp.ClientSession:
    """One pooled client for every call. aiohttp rather than httpx: at 300 calls/s httpx and httpcore took
    three quarters of the executor's CPU (docs/decisions.md)."""
    connector = aiohttp.TCPConnector(limit=concurrency, ttl_dns_cache=60)
    # No cookie jar (each call stands alone, and a receiver's cookies must not reach another call) and no
    # response decompression (only a 4 KiB excerpt is kept): both are per-request work.
    return aiohttp.ClientSession(
        connector=connector,
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
    )


async def call(
    client: aiohttp.ClientSession, due: RunDueData, secrets: list[str], *, allow_private: bool
) -> CallResult:
    body = request_body(due)
    headers = request_headers(due, body, secrets, int(time.time()))
    start = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - start) * 1000)

    timeout = aiohttp.ClientTimeout(total=due.delivery.timeout_seconds)
    try:
        await check_connect_target(due.delivery.url, allow_private=allow_private)
        async with client.request(
            due.delivery.method.value,
            due.delivery.url,
            data=body,
            headers=headers,
            timeout=timeout,
            allow_redirects=False,
        ) as response:
            raw = await response.content.read(RESPONSE_EXCERPT_LIMIT)
            # Keep the excerpt within 4 KiB of characters even after replacement characters.
            text = raw.decode("utf-8", errors="replace")[:RESPONSE_EXCERPT_LIMIT]
            status = response.status
            ok = 200 <= status < 300
            return CallResult(
                ok=ok,
                http_status=status,
                error=None if ok else f"HTTP {status}",
                response_excerpt=text or None,
                duration_ms=elapsed(),
                retryable=not ok and is_retryable_status(status),
                retry_after_seconds=parse_retry_after(response.headers.get("Retry-After"), time.time()),
            )
    except BlockedTarget as exc:
        return CallResult(False, None, f"blocked target: {exc}", None, elapsed())
    except TimeoutError:
        limit = due.delivery.timeout_seconds
        return CallResult(False, None, f"timed out after {limit:g}s", None, elapsed(), retryable=True)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        return CallResult(False, None, f"{type(exc).__name__}: {exc}"[:500], None, elapsed(), retryable=True)
