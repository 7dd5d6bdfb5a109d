"""The pool pings only connections that sat idle, and recovers from connections the server closed under it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import engine as engine_module
from shared.db.engine import create_engine
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
