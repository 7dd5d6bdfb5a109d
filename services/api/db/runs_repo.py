"""Run history reads. The recorder writes it from ``chime.runs.due`` and ``chime.runs.results``; a run-now the
recorder has not seen yet is answered from the API's own request (``run_requests``) as ``queued``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, exists, literal, null, select, text, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.db.schedules_repo import decode_cursor, encode_cursor
from services.api.errors import RunNotFound
from shared.db.tables import run_attempts, run_requests, runs
from shared.events.runs import RunStatus


@dataclass(frozen=True, slots=True)
class RunFilter:
    status: str | None = None
    trigger: str | None = None
    since: datetime | None = None
    until: datetime | None = None


# Run history as the API reads it: the recorder's runs, and run-now requests it has not recorded yet (queued).
_PENDING = select(
    run_requests.c.id,
    run_requests.c.schedule_id,
    run_requests.c.tenant_id,
    run_requests.c.requested_at.label("scheduled_for"),
    run_requests.c.requested_at.label("planned_for"),
    literal(RunStatus.QUEUED.value, String).label("status"),
    run_requests.c.trigger,
    run_requests.c.requested_at.label("created_at"),
    run_requests.c.requested_at.label("updated_at"),
    null().cast(runs.c.finished_at.type).label("finished_at"),
).where(~exists().where(runs.c.id == run_requests.c.id))
_RUNS = union_all(
    select(
        runs.c.id,
        runs.c.schedule_id,
        runs.c.tenant_id,
        runs.c.scheduled_for,
        runs.c.planned_for,
        runs.c.status,
        runs.c.trigger,
        runs.c.created_at,
        runs.c.updated_at,
        runs.c.finished_at,
    ),
    _PENDING,
).subquery("all_runs")


_HISTORY_FIGURES = text("SELECT name, sum(value) FROM history_counts GROUP BY name")


class RunRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def list_for_schedule(
        self, tenant: str, schedule_id: uuid.UUID, flt: RunFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        r = _RUNS.c
        query = select(_RUNS).where(r.tenant_id == tenant, r.schedule_id == schedule_id)
        if flt.status:
            query = query.where(r.status == flt.status)
        if flt.trigger:
            query = query.where(r.trigger == flt.trigger)
        if flt.since:
            query = query.where(r.scheduled_for >= flt.since)
        if flt.until:
            query = query.where(r.scheduled_for < flt.until)
        if cursor is not None:
            when, run_id = json.loads(decode_cursor(cursor))
            query = query.where(tuple_(r.scheduled_for, r.id) < tuple_(datetime.fromisoformat(when), uuid.UUID(run_id)))
        query = query.order_by(r.scheduled_for.desc(), r.id.desc()).limit(limit + 1)
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
            row = (await conn.execute(select(_RUNS).where(_RUNS.c.id == run_id, _RUNS.c.tenant_id == tenant))).first()
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

    async def history_figures(self) -> dict[str, float]:
        """Runs by status (``runs:<status>``) and finished attempts (``attempts:finished``, ``:succeeded``,
        ``:duration_ms``) over the whole history: counts kept by triggers (migration 0007), so reading them costs
        the same at any history size."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_HISTORY_FIGURES)).all()
        return {name: float(value) for name, value in rows}
