"""The async engine, configured from settings."""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import DBAPIError, DisconnectionError
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


class DriverStatement:
    """A statement compiled once for asyncpg and sent to the driver itself, for the hottest request paths.

    SQLAlchemy's execution around one statement (an execution context, a cursor adapter, a result, and the greenlet
    hand-offs between them) cost an API worker 250-370 µs of CPU per create, three times what asyncpg itself spends
    on the statement. The statement is still built with SQLAlchemy, its parameters still pass through the column
    types' bind processors (JSON to text, as the connection's codecs expect), and it runs on a pooled connection
    inside that connection's transaction (``driver_connection``). What SQLAlchemy did on failure is done here: a
    connection that the error closed is invalidated, so the pool opens a new one rather than hand it out again,
    and the error is raised as SQLAlchemy raises a lost connection (a ``DBAPIError`` marked invalidated: a 503 in
    the API). Any other error is asyncpg's own.
    """

    def __init__(self, statement: Any) -> None:
        dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
        compiled = statement.compile(dialect=dialect)
        self.sql: str = str(compiled)
        # (name, the type's bind processor, the value the statement carries itself: a literal such as ``count=1``)
        self._binds: list[tuple[str, Any, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            self._binds.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect), bind.value))

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        out = []
        for name, process, own in self._binds:
            value = params[name] if name in params else own
            out.append(value if process is None else process(value))
        return out

    async def fetch(self, driver: Any, params: dict[str, Any]) -> list[Any]:
        """Every row, on a driver connection the caller holds (``driver_transaction``)."""
        rows: list[Any] = await driver.fetch(self.sql, *self.arguments(params))
        return rows

    async def fetchrow(self, conn: AsyncConnection, params: dict[str, Any]) -> Any:
        driver = await driver_connection(conn)
        try:
            return await driver.fetchrow(self.sql, *self.arguments(params))
        except Exception as exc:
            await _raise_if_lost(conn, driver, exc, self.sql)
            raise  # the statement's own failure, as SQLAlchemy would have let it through


@contextlib.asynccontextmanager
async def driver_transaction(conn: AsyncConnection) -> AsyncIterator[Any]:
    """The asyncpg connection under ``conn`` (an autocommit connection), inside a transaction of its own: committed
    when the block ends, rolled back when it raises. As with ``DriverStatement``, a connection that an error closed
    is invalidated and the error raised as SQLAlchemy's lost connection."""
    driver = await driver_connection(conn)
    try:
        async with driver.transaction():
            yield driver
    except Exception as exc:
        await _raise_if_lost(conn, driver, exc, None)
        raise


async def _raise_if_lost(conn: AsyncConnection, driver: Any, exc: Exception, statement: str | None) -> None:
    """When ``exc`` left the driver's connection closed, do what SQLAlchemy does for a lost connection: invalidate it
    (the pool will not hand it out again) and raise a ``DBAPIError`` marked invalidated instead."""
    if driver.is_closed():
        await conn.invalidate()
        raise DBAPIError(statement, None, exc, connection_invalidated=True) from exc
