"""Flow limits in Postgres, published through the outbox to the compacted ``chime.flow-limits`` topic."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.db.schedules_repo import check_if_match, decode_cursor, encode_cursor
from services.api.errors import FlowLimitNotFound
from services.api.outbox import enqueue
from shared.db.tables import flow_limits
from shared.events import FlowLimitChanged
from shared.events.flow import FlowLimitData, flow_record_key
from shared.timefmt import utcnow
from shared.topics import FLOW_LIMITS


@dataclass(frozen=True, slots=True)
class FlowLimitRecord:
    flow_key: str
    max_concurrency: int
    max_per_second: float | None
    version: int
    created_at: datetime
    updated_at: datetime


def _record(row: Row[Any]) -> FlowLimitRecord:
    return FlowLimitRecord(
        row.flow_key, row.max_concurrency, row.max_per_second, row.version, row.created_at, row.updated_at
    )


def _data(row: Row[Any]) -> FlowLimitData:
    """The flow limit a ``flow_limits`` row holds, as it travels on ``chime.flow-limits``."""
    return FlowLimitData(
        tenant_id=row.tenant_id,
        flow_key=row.flow_key,
        version=row.version,
        max_concurrency=row.max_concurrency,
        max_per_second=row.max_per_second,
    )


def _live(tenant: str) -> Any:
    return (flow_limits.c.tenant_id == tenant) & flow_limits.c.deleted_at.is_(None)


class FlowLimitRepository:
    def __init__(self, engine: AsyncEngine, default_concurrency: int, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._default = default_concurrency
        self._on_commit = on_commit

    async def get(self, tenant: str, flow_key: str) -> FlowLimitRecord:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(flow_limits).where(_live(tenant), flow_limits.c.flow_key == flow_key))
            ).first()
        if row is None:
            raise FlowLimitNotFound(f"no limit on flow {flow_key!r}")
        return _record(row)

    async def list(self, tenant: str, *, limit: int, cursor: str | None) -> tuple[list[FlowLimitRecord], str | None]:
        query = select(flow_limits).where(_live(tenant))
        if cursor is not None:
            query = query.where(flow_limits.c.flow_key > decode_cursor(cursor))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(flow_limits.c.flow_key).limit(limit + 1))).all()
        records = [_record(r) for r in rows[:limit]]
        return records, encode_cursor(records[-1].flow_key) if len(rows) > limit else None

    async def put(
        self,
        tenant: str,
        flow_key: str,
        *,
        max_concurrency: int | None,
        max_per_second: float | None,
        if_match: str | None,
    ) -> tuple[FlowLimitRecord, bool]:
        """Set the flow's limit; the record, and whether it is new (none was in force before)."""
        now = utcnow()
        concurrency = max_concurrency if max_concurrency is not None else self._default
        async with self._engine.begin() as conn:
            # A deleted placeholder first, so two first PUTs of a flow queue on one row lock instead of racing.
            placeholder = {"max_concurrency": concurrency, "version": 0, "updated_at": now, "deleted_at": now}
            await conn.execute(
                pg_insert(flow_limits)
                .values(tenant_id=tenant, flow_key=flow_key, created_at=now, **placeholder)
                .on_conflict_do_nothing()
            )
            current = await self._locked(conn, tenant, flow_key)
            assert current is not None  # noqa: S101 - inserted above when missing
            created = current.deleted_at is not None
            if if_match is not None:
                if created:
                    raise FlowLimitNotFound(f"no limit on flow {flow_key!r} to match If-Match against")
                check_if_match(if_match, current.version, "flow limit")
            version = current.version + 1
            await conn.execute(
                update(flow_limits)
                .where(flow_limits.c.tenant_id == tenant, flow_limits.c.flow_key == flow_key)
                .values(
                    max_concurrency=concurrency,
                    max_per_second=max_per_second,
                    version=version,
                    updated_at=now,
                    deleted_at=None,
                    created_at=now if created else current.created_at,
                )
            )
            row = await self._locked(conn, tenant, flow_key)
            assert row is not None  # noqa: S101 - written in this transaction
            await self._publish(conn, _data(row))
        self._on_commit()
        return _record(row), created

    async def delete(self, tenant: str, flow_key: str, *, if_match: str | None) -> None:
        now = utcnow()
        async with self._engine.begin() as conn:
            current = await self._locked(conn, tenant, flow_key)
            if current is None or current.deleted_at is not None:
                raise FlowLimitNotFound(f"no limit on flow {flow_key!r}")
            check_if_match(if_match, current.version, "flow limit")
            version = current.version + 1
            await conn.execute(
                update(flow_limits)
                .where(flow_limits.c.tenant_id == tenant, flow_limits.c.flow_key == flow_key)
                .values(version=version, updated_at=now, deleted_at=now)
            )
            await self._publish(conn, _data(current).model_copy(update={"version": version, "deleted": True}))
        self._on_commit()

    async def resync(self, tenant: str | None = None) -> int:
        """Publish every flow limit in force again, as its current version (``chime resync``); returns how many."""
        query = select(flow_limits).where(flow_limits.c.deleted_at.is_(None))
        if tenant is not None:
            query = query.where(flow_limits.c.tenant_id == tenant)
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query.order_by(flow_limits.c.tenant_id, flow_limits.c.flow_key))).all()
            for row in rows:
                await self._publish(conn, _data(row))
        self._on_commit()
        return len(rows)

    async def _locked(self, conn: AsyncConnection, tenant: str, flow_key: str) -> Row[Any] | None:
        query = select(flow_limits).where(flow_limits.c.tenant_id == tenant, flow_limits.c.flow_key == flow_key)
        return (await conn.execute(query.with_for_update())).first()

    async def _publish(self, conn: AsyncConnection, data: FlowLimitData) -> None:
        key = flow_record_key(data.tenant_id, data.flow_key)
        event = FlowLimitChanged(subject=data.flow_key, tenant=data.tenant_id, time=utcnow(), data=data)
        # The outbox's aggregate id is bounded; the key (tenant and flow, up to 400 characters) is not.
        aggregate = "flow:" + hashlib.sha256(key).hexdigest()[:40]
        await enqueue(conn, event, FLOW_LIMITS, key=key.decode(), aggregate_id=aggregate, version=data.version)
