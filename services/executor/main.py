"""``chime executor``: deliver runs, with /health and /metrics on ``CHIME_EXECUTOR_PORT``."""

from __future__ import annotations

from services.executor.worker import Executor
from shared import eventloop
from shared.identity import instance_id
from shared.service_runner import serve
from shared.settings import Settings


def main(settings: Settings) -> None:
    executor = Executor(settings, instance_id(settings, "executor"))
    eventloop.run(serve(executor, settings, settings.executor_port))
