"""Per-tenant request rate limit (token bucket), per API process."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from services.api.errors import RateLimited


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_second: float, burst: float | None = None) -> None:
        self._rate = per_second
        self._burst = burst if burst is not None else max(per_second, 1.0)
        self._buckets: dict[str, _Bucket] = {}

    def check(self, tenant: str) -> None:
        now = time.monotonic()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = self._buckets[tenant] = _Bucket(tokens=self._burst, updated=now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / self._rate)
            raise RateLimited(
                f"tenant exceeds {self._rate:g} requests per second", headers={"Retry-After": str(max(wait, 1))}
            )
        bucket.tokens -= 1.0
        if len(self._buckets) > 100_000:
            self._buckets.clear()
