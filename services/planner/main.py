"""``chime planner``: run the Faust worker, with /health and /metrics on ``CHIME_PLANNER_PORT``."""

from __future__ import annotations

import asyncio

import faust

from services.planner.app import Planner
from shared.opsserver import OpsServer
from shared.settings import Settings


def main(settings: Settings) -> None:
    planner = Planner(settings)

    async def health() -> tuple[bool, dict[str, object]]:
        return planner.recovered, {"recovered": planner.recovered, "heap_entries": len(planner.heaps)}

    async def serve_ops() -> None:
        async with OpsServer(settings.ops_host, settings.planner_port, planner.metrics.registry, health):
            await asyncio.Event().wait()

    planner.app.task(serve_ops)
    worker = faust.Worker(planner.app, loglevel=settings.log_level.lower(), redirect_stdouts=False)
    worker.execute_from_commandline()
