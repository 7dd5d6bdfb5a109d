"""``chime api``: serve the REST API with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn

from services.api.app import create_app
from shared.gcpause import GcPauses, freeze_startup_heap, tune_collector
from shared.settings import Settings


class _Server(uvicorn.Server):
    """Uvicorn re-raises SIGTERM after its graceful shutdown, so the process dies 'killed by signal'.
    Chime's services exit 0 after a clean drain, which is what supervisors and Kubernetes expect."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        freeze_startup_heap()


def main(settings: Settings) -> None:
    app = create_app(settings)
    GcPauses(app.state.metrics.registry).install()
    tune_collector()
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        loop="uvloop",
        access_log=False,
        timeout_graceful_shutdown=10,
        # Longer than common load balancers' idle timeout (60 s), so the proxy never reuses a connection the
        # server is closing.
        timeout_keep_alive=75,
    )
    _Server(config).run()
