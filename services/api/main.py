"""``chime api``: serve the REST API with uvicorn, in one process or several sharing the port."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn

from services.api.app import create_app
from shared.gcpause import GcPauses, freeze_startup_heap, tune_collector
from shared.logs import configure_logging
from shared.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_STOP_GRACE_S = 15.0


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


def _config(settings: Settings) -> uvicorn.Config:
    app = create_app(settings)
    GcPauses(app.state.metrics.registry).install()
    tune_collector()
    return uvicorn.Config(
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


def main(settings: Settings) -> None:
    if settings.api_workers == 1:
        _Server(_config(settings)).run()
        return
    sys.exit(_supervise(settings))


def _serve(settings: Settings, sock: socket.socket, parent: int) -> None:
    """One worker: the whole app (its own pools, relay and background tasks) on the shared socket."""
    if sys.platform == "linux":
        # A worker must not outlive its parent (a SIGKILL'd parent cannot stop it), or it would keep the port.
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        # The parent died while this worker was starting, before the signal above was asked for.
        return
    configure_logging(settings.log_level, settings.log_format)
    _Server(_config(settings)).run(sockets=[sock])


def _supervise(settings: Settings) -> int:
    """Start ``api_workers`` workers on one bound socket; stop them all on SIGTERM or SIGINT.

    A worker that exits on its own stops the others too, and the exit status says so: the process supervisor
    (Kubernetes, systemd, ``make run``) restarts the API whole, as it would a single process.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in settings.api_host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.api_host, settings.api_port))
    sock.listen(2048)
    sock.set_inheritable(True)
    multiprocessing.allow_connection_pickling()
    spawn = multiprocessing.get_context("spawn")
    workers: list[SpawnProcess] = [
        spawn.Process(target=_serve, args=(settings, sock, os.getpid()), name=f"chime-api-{n}", daemon=False)
        for n in range(settings.api_workers)
    ]
    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    for worker in workers:
        worker.start()
    log.info("api: %d workers on %s:%d", len(workers), settings.api_host, settings.api_port)
    lost: list[SpawnProcess] = []
    while not stopping and not lost:
        ready = multiprocessing.connection.wait([w.sentinel for w in workers], timeout=0.5)
        lost = [w for w in workers if w.sentinel in ready]
    for worker in lost:
        # Its sentinel closes as it exits, a moment before it can be reaped.
        worker.join()
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
    for worker in workers:
        worker.join(timeout=_STOP_GRACE_S)
        if worker.is_alive():
            worker.kill()
            worker.join()
    sock.close()
    if lost:
        log.error("api: worker %s exited with %s; stopping the others", lost[0].name, lost[0].exitcode)
        return 1
    return 0
