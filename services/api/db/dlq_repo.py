"""Dead letters as the API sees them: list, inspect, delete, and request replays (through the outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.db.schedules_repo import decode_cursor, encode_cursor
from services.api.errors import DlqEntryNotFound, InvalidTransition
from services.api.outbox import enqueue
from shared.db.tables import dlq_entries
from shared.dlq_states import DlqEvent, DlqStatus, InvalidDlqTransition, next_status, sources, target
from shared.events import ReplayCommand
from shared.events.runs import ReplayCommandData
from shared.timefmt import utcnow
from shared.topics import DLQ_COMMANDS

_REPLAYABLE = sorted(state.value for state in sources(DlqEvent.REPLAY_REQUESTED))


@dataclass(frozen=True, slots=True)
class DlqFilter:
    schedule_id: uuid.UUID | None = None
    http_status: int | None = None
    status: DlqStatus | None = None
    since: datetime | None = None
    until: datetime | None = None


def _apply(query: Any, tenant: str, flt: DlqFilter) -> Any:
    query = query.where(dlq_entries.c.tenant_id == tenant)
    if flt.schedule_id is not None:
        query = query.where(dlq_entries.c.schedule_id == flt.schedule_id)
    if flt.http_status is not None:
        query = query.where(dlq_entries.c.last_http_status == flt.http_status)
    if flt.status is not None:
        query = query.where(dlq_entries.c.status == flt.status)
    if flt.since is not None:
        query = query.where(dlq_entries.c.dead_at >= flt.since)
    if flt.until is not None:
        query = query.where(dlq_entries.c.dead_at < flt.until)
    return query


class DlqRepository:
    def __init__(self, engine: AsyncEngine, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._on_commit = on_commit

    async def list(
        self, tenant: str, flt: DlqFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = _apply(select(dlq_entries), tenant, flt)
        if cursor is not None:
            query = query.where(dlq_entries.c.id < uuid.UUID(decode_cursor(cursor)))
        query = query.order_by(dlq_entries.c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
        page = rows[:limit]
        return page, encode_cursor(str(page[-1]["id"])) if len(rows) > limit else None

    async def get(self, tenant: str, entry_id: uuid.UUID) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(dlq_entries).where(dlq_entries.c.id == entry_id, dlq_entries.c.tenant_id == tenant)
                )
            ).first()
        if row is None:
            raise DlqEntryNotFound(f"no dead-letter entry {entry_id}")
        return dict(row._mapping)

    async def delete(self, tenant: str, entry_id: uuid.UUID) -> None:
        async with self._engine.begin() as conn:
            done = await conn.execute(
                delete(dlq_entries).where(dlq_entries.c.id == entry_id, dlq_entries.c.tenant_id == tenant)
            )
        if not done.rowcount:
            raise DlqEntryNotFound(f"no dead-letter entry {entry_id}")

    async def _request(self, conn: AsyncConnection, row: Any, now: datetime) -> None:
        await conn.execute(
            update(dlq_entries)
            .where(dlq_entries.c.id == row.id)
            .values(status=target(DlqEvent.REPLAY_REQUESTED).value, replay_requested_at=now, updated_at=now)
        )
        data = ReplayCommandData(
            entry_id=row.id, run_id=row.run_id, schedule_id=row.schedule_id, tenant_id=row.tenant_id, requested_at=now
        )
        command = ReplayCommand(subject=str(row.schedule_id), tenant=row.tenant_id, time=now, data=data)
        await enqueue(conn, command, DLQ_COMMANDS, key=str(row.schedule_id), aggregate_id=str(row.id), version=0)

    async def replay(self, tenant: str, entry_id: uuid.UUID) -> dict[str, Any]:
        """Request one replay. A second request while the first is in flight is refused, so it cannot deliver twice."""
        now = utcnow()
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    select(dlq_entries)
                    .where(dlq_entries.c.id == entry_id, dlq_entries.c.tenant_id == tenant)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise DlqEntryNotFound(f"no dead-letter entry {entry_id}")
            try:
                next_status(DlqStatus(row.status), DlqEvent.REPLAY_REQUESTED)
            except InvalidDlqTransition as exc:
                raise InvalidTransition(f"{exc}; only dead entries can be replayed") from None
            await self._request(conn, row, now)
        self._on_commit()
        return await self.get(tenant, entry_id)

    async def count_replayable(self, tenant: str, flt: DlqFilter, *, limit: int) -> int:
        """How many entries :meth:`replay_matching` would take now (at most ``limit``)."""
        query = _apply(select(dlq_entries.c.id), tenant, flt).where(dlq_entries.c.status.in_(_REPLAYABLE))
        async with self._engine.connect() as conn:
            counted = await conn.execute(select(func.count()).select_from(query.limit(limit).subquery()))
        return int(counted.scalar_one())

    async def replay_matching(self, tenant: str, flt: DlqFilter, *, limit: int) -> int:
        """Request replays of up to ``limit`` dead entries matching ``flt``; returns how many."""
        now = utcnow()
        query = _apply(select(dlq_entries), tenant, flt).where(dlq_entries.c.status.in_(_REPLAYABLE))
        query = query.order_by(dlq_entries.c.id).limit(limit).with_for_update(skip_locked=True)
        async with self._engine.begin() as conn:
            rows = (await conn.execute(query)).all()
            for row in rows:
                await self._request(conn, row, now)
        if rows:
            self._on_commit()
        return len(rows)
