"""The async engine, configured from settings."""

from __future__ import annotations

import ssl
import time
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from shared.settings import Settings

# A connection back in the pool for longer than this is pinged before it is handed out again.
PING_AFTER_IDLE_S = 1.0


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "chime"}}
    if settings.database_ssl in ("require", "verify-full"):
        ctx = ssl.create_default_context()
        if settings.database_ssl == "require":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        connect_args["ssl"] = ctx
    opts: dict[str, Any] = {
        # No overflow: SQLAlchemy closes an overflow connection as soon as it is returned, so a process whose load
        # rose past the pool opened and closed a connection per request (a server process forked, its type codecs
        # looked up) just when it had least to spare. Connections open as they are needed and then stay; a request
        # beyond the pool waits for one.
        "pool_size": settings.database_pool_size,
        "max_overflow": 0,
        "connect_args": connect_args,
    }
    opts.update(overrides)
    engine = create_async_engine(settings.database_url, **opts)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: AsyncEngine) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections that sat idle only.

    The asyncpg dialect's ping is three round trips (BEGIN, an empty query, ROLLBACK), which cost more than the
    statement of a short request. A connection that was in use a moment ago is not pinged: if the database went away
    since, its statement fails as a disconnect, and SQLAlchemy then drops every connection the pool held.
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["returned_at"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _handed_out(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection) -> None:
        returned = record.info.get("returned_at")
        if returned is None or time.monotonic() - returned < PING_AFTER_IDLE_S:
            return
        try:
            dbapi_connection.ping()
        except Exception as exc:
            # The pool discards this connection and checks out another (a new one if need be).
            raise DisconnectionError("connection lost while idle") from exc


async def driver_connection(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, for statements sent to the driver directly (set-based writes whose
    arrays SQLAlchemy would process value by value), inside ``conn``'s transaction.

    SQLAlchemy's asyncpg adapter sends BEGIN with the first statement it runs itself, not at ``engine.begin()``: a
    statement sent straight to asyncpg before any of SQLAlchemy's would run, and commit, on its own. So when ``conn``
    is in a transaction that has not reached the database yet, an empty statement through SQLAlchemy begins it.
    """
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    sync = conn.sync_connection
    autocommit = sync is not None and sync.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if not autocommit and conn.in_transaction() and not driver.is_in_transaction():
        await conn.exec_driver_sql(";")
    return driver
