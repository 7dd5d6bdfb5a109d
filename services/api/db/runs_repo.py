"""Run history reads. The recorder writes it from ``chime.runs.due`` and ``chime.runs.results``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.db.schedules_repo import decode_cursor, encode_cursor
from services.api.errors import RunNotFound
from shared.db.tables import run_attempts, runs


@dataclass(frozen=True, slots=True)
class RunFilter:
    status: str | None = None
    trigger: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class RunRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_for_schedule(
        self, tenant: str, schedule_id: uuid.UUID, flt: RunFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        query = select(runs).where(runs.c.tenant_id == tenant, runs.c.schedule_id == schedule_id)
        if flt.status:
            query = query.where(runs.c.status == flt.status)
        if flt.trigger:
            query = query.where(runs.c.trigger == flt.trigger)
        if flt.since:
            query = query.where(runs.c.scheduled_for >= flt.since)
        if flt.until:
            query = query.where(runs.c.scheduled_for < flt.until)
        if cursor is not None:
            when, run_id = json.loads(decode_cursor(cursor))
            query = query.where(
                tuple_(runs.c.scheduled_for, runs.c.id) < tuple_(datetime.fromisoformat(when), uuid.UUID(run_id))
            )
        query = query.order_by(runs.c.scheduled_for.desc(), runs.c.id.desc()).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = [dict(r._mapping) for r in (await conn.execute(query)).all()]
            page = rows[:limit]
            attempts = await self._attempts(conn, [r["id"] for r in page])
        for row in page:
            row["attempts"] = attempts.get(row["id"], [])
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(json.dumps([last["scheduled_for"].isoformat(), str(last["id"])]))
        return page, next_cursor

    async def get(self, tenant: str, run_id: uuid.UUID) -> dict[str, Any]:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(runs).where(runs.c.id == run_id, runs.c.tenant_id == tenant))).first()
            if row is None:
                raise RunNotFound(f"no run {run_id}")
            run = dict(row._mapping)
            run["attempts"] = (await self._attempts(conn, [run_id])).get(run_id, [])
        return run

    async def _attempts(self, conn: Any, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        if not run_ids:
            return {}
        rows = (
            await conn.execute(
                select(run_attempts)
                .where(run_attempts.c.run_id.in_(run_ids))
                .order_by(run_attempts.c.run_id, run_attempts.c.attempt)
            )
        ).all()
        out: dict[uuid.UUID, list[dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r.run_id, []).append(dict(r._mapping))
        return out

    async def counts_by_status(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))).all()
        return {status: count for status, count in rows}

    async def attempt_stats(self) -> tuple[int, int, float]:
        """Finished attempts, the successful ones among them, and their average duration in ms."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(
                        func.count(),
                        func.count().filter((run_attempts.c.http_status >= 200) & (run_attempts.c.http_status < 300)),
                        func.coalesce(func.avg(run_attempts.c.duration_ms), 0.0),
                    ).where(run_attempts.c.finished_at.is_not(None))
                )
            ).one()
        return int(row[0]), int(row[1]), float(row[2])
