"""Runs a consuming service: signal handling, /health and /metrics, and a clean stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from shared.gcpause import GcPauses, freeze_startup_heap, tune_collector
from shared.health import Check
from shared.opsserver import OpsServer
from shared.settings import Settings


class ConsumingService(Protocol):
    registry: CollectorRegistry

    async def run(self) -> None: ...

    def stop(self) -> None: ...

    async def health(self) -> tuple[bool, dict[str, object]]:
        """Readiness: whether the service is consuming and making progress, with details."""
        ...


async def serve(
    service: ConsumingService, settings: Settings, port: int, dependencies: dict[str, Check] | None = None
) -> None:
    """Run ``service`` until SIGINT/SIGTERM; it then drains and returns, and the process exits 0. Readiness
    (``/health/detailed``) also checks ``dependencies``."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)

    GcPauses(service.registry).install()
    tune_collector()

    async def freeze_once_consuming() -> None:
        while not (await service.health())[0]:  # noqa: ASYNC110 - readiness is a check, not an event
            await asyncio.sleep(0.5)
        freeze_startup_heap()

    freezer = asyncio.create_task(freeze_once_consuming())
    try:
        async with OpsServer(settings, port, service.registry, service.health, dependencies):
            await service.run()
    finally:
        freezer.cancel()


def database_check(engine: AsyncEngine) -> Check:
    async def check() -> str:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return "connected"

    return check


async def serve_with_database(
    settings: Settings, build: Callable[[Settings, AsyncEngine], ConsumingService], port: int
) -> None:
    """``serve`` a service that needs the database, disposing of the engine afterwards."""
    engine = create_engine(settings)
    try:
        await serve(build(settings, engine), settings, port, {"database": database_check(engine)})
    finally:
        await engine.dispose()
