"""Per-tenant request rate limit: one token bucket per tenant, shared by every API process through Postgres.

A database round trip per request would cost more than a simple request's own work, so each process leases a
slice of a tenant's tokens (a tenth of a second's worth, at least one) from the shared bucket and spends them
locally; a lease left unspent lapses after a second. The limit then holds across replicas to within one slice
per process, and a tenant's requests touch the database about ten times a second per process at most.
The bucket itself is ``chime_take_tokens`` (migration 0005): one row per key, refilled at the rate and capped at
the burst, updated under its row lock.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.errors import RateLimited

_TAKE = text("SELECT chime_take_tokens(:key, :rate, :burst, :want)")
_LEASE_S = 0.1
_LEASE_TTL_S = 1.0
_MAX_TENANTS = 100_000


@dataclass(slots=True)
class _Lease:
    tokens: float
    expires: float


class RateLimiter:
    def __init__(
        self,
        engine: AsyncEngine,
        per_second: float,
        burst: float | None = None,
        kind: str = "api",
        limit: str | None = None,
    ) -> None:
        self._engine = engine
        self._rate = per_second
        # What the 429 says the limit is.
        self._limit = limit or f"{per_second:g} requests per second"
        self._burst = burst if burst is not None else max(per_second, 1.0)
        self._kind = kind
        self._slice = max(1.0, math.floor(per_second * _LEASE_S))
        self._leases: dict[str, _Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def check(self, tenant: str) -> None:
        """Spend one token of ``tenant``'s bucket, or raise :class:`RateLimited` with ``Retry-After``."""
        if self._spend(tenant):
            return
        lock = self._locks.setdefault(tenant, asyncio.Lock())
        async with lock:
            # Another request may have leased while this one waited for the lock.
            if self._spend(tenant):
                return
            params = {"key": f"{self._kind}:{tenant}", "rate": self._rate, "burst": self._burst, "want": self._slice}
            async with self._engine.begin() as conn:
                granted = float((await conn.execute(_TAKE, params)).scalar_one())
            if len(self._leases) > _MAX_TENANTS:
                self._leases.clear()
                self._locks = {tenant: lock}
            self._leases[tenant] = _Lease(granted, time.monotonic() + _LEASE_TTL_S)
            if self._spend(tenant):
                return
        wait = max(1, math.ceil(1.0 / self._rate))
        raise RateLimited(f"tenant exceeds {self._limit}", headers={"Retry-After": str(wait)})

    def _spend(self, tenant: str) -> bool:
        lease = self._leases.get(tenant)
        if lease is None or lease.tokens < 1.0 or time.monotonic() >= lease.expires:
            return False
        lease.tokens -= 1.0
        return True
