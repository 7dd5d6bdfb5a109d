"""``chime executor``: deliver runs, with /health and /metrics on ``CHIME_EXECUTOR_PORT``."""

from __future__ import annotations

import asyncio
import signal

from services.executor.worker import Executor
from shared.identity import instance_id
from shared.opsserver import OpsServer
from shared.settings import Settings


async def run(settings: Settings) -> None:
    executor = Executor(settings, instance_id(settings, "executor"))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, executor.stop)

    async def health() -> tuple[bool, dict[str, object]]:
        return executor.consuming, {"consuming": executor.consuming, "worker": executor.worker_id}

    async with OpsServer(settings.ops_host, settings.executor_port, executor.metrics.registry, health):
        await executor.run()


def main(settings: Settings) -> None:
    asyncio.run(run(settings))
