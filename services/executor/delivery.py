"""One webhook call: the request Chime sends, and what it makes of the answer."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx

from services.executor.ssrf import BlockedTarget, check_connect_target
from shared.events.runs import RESPONSE_EXCERPT_LIMIT, RunDueData
from shared.timefmt import format_utc
from shared.version import chime_version
from shared.webhook_signing import sign


@dataclass(frozen=True, slots=True)
class CallResult:
    ok: bool
    http_status: int | None
    error: str | None
    response_excerpt: str | None
    duration_ms: int


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


async def call(client: httpx.AsyncClient, due: RunDueData, secrets: list[str], *, allow_private: bool) -> CallResult:
    body = request_body(due)
    headers = request_headers(due, body, secrets, int(time.time()))
    start = time.perf_counter()

    def elapsed() -> int:
        return int((time.perf_counter() - start) * 1000)

    try:
        await check_connect_target(due.delivery.url, allow_private=allow_private)
        async with client.stream(
            due.delivery.method.value,
            due.delivery.url,
            content=body,
            headers=headers,
            timeout=due.delivery.timeout_seconds,
        ) as response:
            excerpt = bytearray()
            async for chunk in response.aiter_bytes():
                excerpt += chunk
                if len(excerpt) >= RESPONSE_EXCERPT_LIMIT:
                    break
            text = bytes(excerpt[:RESPONSE_EXCERPT_LIMIT]).decode("utf-8", errors="replace")
            # Keep the excerpt within 4 KiB of characters even after replacement characters.
            text = text[:RESPONSE_EXCERPT_LIMIT]
            ok = 200 <= response.status_code < 300
            return CallResult(
                ok=ok,
                http_status=response.status_code,
                error=None if ok else f"HTTP {response.status_code}",
                response_excerpt=text or None,
                duration_ms=elapsed(),
            )
    except BlockedTarget as exc:
        return CallResult(False, None, f"blocked target: {exc}", None, elapsed())
    except httpx.TimeoutException:
        return CallResult(False, None, f"timed out after {due.delivery.timeout_seconds:g}s", None, elapsed())
    except (httpx.HTTPError, OSError, TimeoutError) as exc:
        return CallResult(False, None, f"{type(exc).__name__}: {exc}"[:500], None, elapsed())
