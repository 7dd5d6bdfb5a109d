"""Runs a consuming service: signal handling, /health and /metrics, and a clean stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Protocol

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from shared.gcpause import GcPauses, freeze_startup_heap, tune_collector
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

    GcPauses(service.registry).install()
    tune_collector()

    async def freeze_once_consuming() -> None:
        while not service.consuming:  # noqa: ASYNC110 - the service exposes a flag, not an event
            await asyncio.sleep(0.5)
        freeze_startup_heap()

    freezer = asyncio.create_task(freeze_once_consuming())
    try:
        async with OpsServer(host, port, service.registry, health):
            await service.run()
    finally:
        freezer.cancel()


async def serve_with_database(
    settings: Settings, build: Callable[[Settings, AsyncEngine], ConsumingService], port: int
) -> None:
    """``serve`` a service that needs the database, disposing of the engine afterwards."""
    engine = create_engine(settings)
    try:
        await serve(build(settings, engine), settings.ops_host, port)
    finally:
        await engine.dispose()
