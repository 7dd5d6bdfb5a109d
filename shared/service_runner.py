"""Runs a consuming service: signal handling, /health and /metrics, and a clean stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from shared.opsserver import OpsServer
from shared.settings import Settings


class ConsumingService(Protocol):
    registry: CollectorRegistry
    consuming: bool

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def serve(service: ConsumingService, host: str, port: int) -> None:
    """Run ``service`` until SIGINT/SIGTERM; it then drains and returns, and the process exits 0."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, service.stop)

    async def health() -> tuple[bool, dict[str, object]]:
        return service.consuming, {"consuming": service.consuming}

    async with OpsServer(host, port, service.registry, health):
        await service.run()


async def serve_with_database(
    settings: Settings, build: Callable[[Settings, AsyncEngine], ConsumingService], port: int
) -> None:
    """``serve`` a service that needs the database, disposing of the engine afterwards."""
    engine = create_engine(settings)
    try:
        await serve(build(settings, engine), settings.ops_host, port)
    finally:
        await engine.dispose()
