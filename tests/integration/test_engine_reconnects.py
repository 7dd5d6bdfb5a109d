"""The pool pings only connections that sat idle, and recovers from connections the server closed under it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import Integer, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import engine as engine_module
from shared.db.engine import DriverStatement, create_engine, driver_transaction
from shared.settings import Settings

_TERMINATE = text("SELECT pg_terminate_backend(:pid, 5000)")


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(settings, pool_size=1, max_overflow=0)
    yield eng
    await eng.dispose()


async def _backend_pid(eng: AsyncEngine) -> int:
    async with eng.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _terminate(settings: Settings, pid: int) -> None:
    """Close ``pid``'s connection from the server's side, as a database restart would."""
    killer = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with killer.connect() as conn:
            assert (await conn.execute(_TERMINATE, {"pid": pid})).scalar_one()
    finally:
        await killer.dispose()


async def _closed_by_server(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch, ping_after_idle_s: float
) -> int:
    """Use the pool's one connection, then close it from the server's side; returns its backend pid."""
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", ping_after_idle_s)
    pid = await _backend_pid(engine)
    await _terminate(settings, pid)
    return pid


async def test_a_connection_closed_while_idle_is_replaced_before_use(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _closed_by_server(engine, settings, monkeypatch, ping_after_idle_s=0.0)
    # The ping finds the connection dead and the pool hands out a new one: the caller sees no error.
    second = await _backend_pid(engine)
    assert second != first


async def test_a_connection_closed_while_busy_fails_once_then_the_pool_reconnects(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await _closed_by_server(engine, settings, monkeypatch, ping_after_idle_s=3600.0)
    # Not pinged (it was in use a moment ago): its statement fails as a disconnect...
    with pytest.raises(DBAPIError) as failed:
        await _backend_pid(engine)
    assert failed.value.connection_invalidated
    # ...and the next checkout gets a fresh connection.
    assert await _backend_pid(engine) != first


_BACKEND_PID = DriverStatement(select(func.pg_backend_pid().label("pid"), bindparam("tag", type_=JSONB).label("tag")))


async def _driver_pid(eng: AsyncEngine, tag: object) -> tuple[int, object]:
    async with eng.connect() as conn:
        row = await _BACKEND_PID.fetchrow(conn, {"tag": tag})
        return int(row["pid"]), row["tag"]


async def test_a_driver_statement_runs_with_its_types_and_recovers_like_sqlalchemy(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parameters pass through the column types' bind processors (JSON to text, as the connection's codecs expect).
    pid, tag = await _driver_pid(engine, {"a": [1, None]})
    assert tag == {"a": [1, None]}
    first = await _closed_by_server(engine, settings, monkeypatch, ping_after_idle_s=3600.0)
    assert first == pid
    # A connection the server closed fails as SQLAlchemy reports a disconnect (the API answers 503)...
    with pytest.raises(DBAPIError) as failed:
        await _driver_pid(engine, None)
    assert failed.value.connection_invalidated
    # ...and it is not handed out again.
    assert (await _driver_pid(engine, None))[0] != first


async def test_a_driver_statement_that_fails_on_its_own_leaves_the_connection_in_the_pool(
    engine: AsyncEngine,
) -> None:
    pid, _ = await _driver_pid(engine, None)
    failing = DriverStatement(select(func.pg_backend_pid() / bindparam("zero", type_=Integer)))
    async with engine.connect() as conn:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await failing.fetchrow(conn, {"zero": 0})
    assert (await _driver_pid(engine, None))[0] == pid


async def test_a_driver_transaction_commits_rolls_back_and_recovers(
    engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with autocommit.connect() as conn, driver_transaction(conn) as driver:
        await driver.execute("CREATE TEMP TABLE IF NOT EXISTS probe (n int)")
        await driver.execute("INSERT INTO probe VALUES (1)")
    with pytest.raises(RuntimeError):
        async with autocommit.connect() as conn, driver_transaction(conn) as driver:
            await driver.execute("INSERT INTO probe VALUES (2)")
            raise RuntimeError("the round failed after its statement")
    async with autocommit.connect() as conn:
        assert [r[0] for r in (await conn.execute(text("SELECT n FROM probe"))).all()] == [1]
    first = await _closed_by_server(engine, settings, monkeypatch, ping_after_idle_s=3600.0)
    with pytest.raises(DBAPIError) as failed:
        async with autocommit.connect() as conn, driver_transaction(conn) as driver:
            await driver.execute("SELECT 1")
    assert failed.value.connection_invalidated
    assert await _backend_pid(engine) != first
