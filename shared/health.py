"""Dependency checks for readiness (`/health/detailed`): each with its status, latency and a one-line detail."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from aiokafka.client import AIOKafkaClient
from pydantic import BaseModel

from shared.kafka import client_options
from shared.settings import Settings

CHECK_TIMEOUT_S = 2.0

Check = Callable[[], Awaitable[str]]


class DependencyStatus(BaseModel):
    status: Literal["ok", "down"]
    latency_ms: float
    detail: str


async def timed(check: Check) -> DependencyStatus:
    """Run ``check`` for at most ``CHECK_TIMEOUT_S``; any exception (a timeout included) is the dependency down."""
    start = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_S)
        status: Literal["ok", "down"] = "ok"
    except Exception as exc:  # noqa: BLE001 - every failure is reported as the check's status
        detail, status = f"{type(exc).__name__}: {exc}"[:300], "down"
    return DependencyStatus(status=status, latency_ms=round((time.perf_counter() - start) * 1000, 2), detail=detail)


async def check_all(checks: dict[str, Check]) -> dict[str, DependencyStatus]:
    results = await asyncio.gather(*(timed(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


class KafkaProbe:
    """Asks the brokers for cluster metadata, over a client of its own kept between checks."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AIOKafkaClient | None = None

    async def check(self) -> str:
        if self._client is None:
            client = AIOKafkaClient(**client_options(self._settings), client_id="chime-health")
            try:
                await client.bootstrap()
            except BaseException:
                await client.close()
                raise
            self._client = client
        try:
            metadata = await self._client.fetch_all_metadata()
        except BaseException:
            client, self._client = self._client, None
            await client.close()
            raise
        brokers = metadata.brokers()
        if not brokers:
            raise ConnectionError("metadata names no broker")
        return f"metadata from {len(brokers)} broker(s), {len(metadata.topics())} topics"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()
