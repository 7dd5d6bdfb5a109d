"""``chime planner``: run the Faust worker, with /health and /metrics on ``CHIME_PLANNER_PORT``."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import faust

from services.planner.app import Planner
from shared import eventloop
from shared.gcpause import GcPauses, freeze_startup_heap, tune_collector
from shared.opsserver import OpsServer
from shared.settings import Settings

_SWITCH_INTERVAL_S = 0.001


class _Worker(faust.Worker):
    """Stops the fire loop before Faust stops anything else, so the last fires' cursors reach the tables."""

    def __init__(self, planner: Planner, **kwargs: Any) -> None:
        super().__init__(planner.app, **kwargs)
        self._planner = planner

    async def on_stop(self) -> None:
        await self._planner.stop_firing()
        await super().on_stop()


def main(settings: Settings) -> None:
    # Before Faust builds its loops: the worker's and the consumer thread's.
    eventloop.install()
    # Faust reads Kafka on its own thread. While the fire loop is busy, that thread waited up to the interpreter's
    # 5 ms switch interval for the GIL after every socket call, and schedule changes reached the planner seconds
    # late under load; 1 ms keeps the reading thread close behind.
    sys.setswitchinterval(_SWITCH_INTERVAL_S)
    planner = Planner(settings)
    GcPauses(planner.metrics.registry).install()
    tune_collector()
    # The heaps rebuilt on recovery live as long as their partitions: no collection needs to walk them.
    planner.after_recovery = freeze_startup_heap

    async def health() -> tuple[bool, dict[str, object]]:
        ready = planner.holds_partitions()
        return ready, {
            "recovered": planner.recovered,
            "owns_partitions": ready,
            "partitions": planner.partitions_held(),
            "heap_entries": len(planner.heaps),
        }

    async def serve_ops() -> None:
        async with OpsServer(settings, settings.planner_port, planner.metrics.registry, health):
            await asyncio.Event().wait()

    planner.app.task(serve_ops)
    worker = _Worker(planner, loglevel=settings.log_level.lower(), redirect_stdouts=False)
    worker.execute_from_commandline()
