"""``chime recorder``: writes run history from ``chime.runs.due`` and ``chime.runs.results`` in batches.

Idempotent: a run row is created once (by whichever event arrives first), statuses only move forward, and
an attempt row is keyed by (run, attempt), so re-delivered records change nothing. Offsets are committed
after the batch's transaction commits.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.tables import run_attempts, runs, schedules
from shared.errors import EventDecodeError
from shared.events import (
    RunAttemptFailed,
    RunCancelled,
    RunDeadLettered,
    RunDue,
    RunSkipped,
    RunSucceeded,
    decode_event,
)
from shared.events.runs import RunOutcomeData, RunStatus, Trigger
from shared.events.schedule import ScheduleStatus
from shared.identity import instance_id
from shared.kafka import build_consumer
from shared.service_runner import serve_with_database
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import RUNS_DUE, RUNS_RESULTS, topic_name

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 600.0
_PRUNE_BATCH = 5_000

_RANK = {
    RunStatus.QUEUED: 0,
    RunStatus.RUNNING: 1,
    RunStatus.RETRYING: 2,
    RunStatus.SUCCEEDED: 3,
    RunStatus.FAILED: 3,
    RunStatus.DEAD_LETTERED: 3,
    RunStatus.SKIPPED: 3,
}


def _rank(column: Any) -> Any:
    return case({s.value: r for s, r in _RANK.items()}, value=column, else_=0)


class Recorder:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = CollectorRegistry()
        self.recorded = Counter("chime_recorder_events_total", "Events recorded", ["type"], registry=self.registry)
        self.batch_seconds = Histogram("chime_recorder_batch_seconds", "Batch write time", registry=self.registry)
        self._stopping = asyncio.Event()
        self.consuming = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self.settings
        consumer: AIOKafkaConsumer = build_consumer(
            s,
            topic_name(s, RUNS_DUE),
            topic_name(s, RUNS_RESULTS),
            group_id=f"{s.topic_prefix}recorder",
            group_instance_id=instance_id(s, "recorder"),
            session_timeout_ms=s.consumer_session_timeout_ms,
            heartbeat_interval_ms=s.consumer_heartbeat_interval_ms,
            auto_offset_reset="earliest",
            max_poll_records=1000,
        )
        await consumer.start()
        self.consuming = True
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + 30
        try:
            while not self._stopping.is_set():
                if loop.time() >= next_prune:
                    await self.prune()
                    next_prune = loop.time() + _PRUNE_EVERY_S
                batch = await consumer.getmany(timeout_ms=100, max_records=1000)
                records = [r for rs in batch.values() for r in rs]
                if not records:
                    continue
                with self.batch_seconds.time():
                    await self.write([r.value or b"" for r in records])
                await consumer.commit()
        finally:
            self.consuming = False
            await consumer.stop()

    async def prune(self) -> int:
        """Delete runs (and their attempts) older than ``CHIME_RUN_RETENTION_DAYS``, a bounded batch at a time."""
        cutoff = utcnow() - timedelta(days=self.settings.run_retention_days)
        total = 0
        while True:
            async with self.engine.begin() as conn:
                old = select(runs.c.id).where(runs.c.created_at < cutoff).limit(_PRUNE_BATCH).scalar_subquery()
                deleted = (await conn.execute(delete(runs).where(runs.c.id.in_(old)))).rowcount
            total += deleted
            if deleted < _PRUNE_BATCH:
                break
        if total:
            log.info("pruned %d runs older than %d days", total, self.settings.run_retention_days)
        return total

    async def write(self, values: list[bytes]) -> None:
        async with self.engine.begin() as conn:
            for raw in values:
                try:
                    event = decode_event(raw)
                except EventDecodeError:
                    log.error("undecodable record set aside", extra={"raw": raw[:2048]})
                    continue
                if isinstance(event, RunDue):
                    await self._due(conn, event)
                elif isinstance(event, RunSucceeded | RunAttemptFailed | RunDeadLettered):
                    await self._outcome(conn, event.data)
                elif isinstance(event, RunCancelled):
                    await self._cancelled(conn, event)
                elif isinstance(event, RunSkipped):
                    await self._skipped(conn, event)
                else:
                    continue
                self.recorded.labels(event.type).inc()

    async def _insert_run(
        self,
        conn: AsyncConnection,
        *,
        run_id: Any,
        schedule_id: Any,
        tenant: str,
        nominal: Any,
        planned: Any,
        trigger: Trigger,
        status: RunStatus,
    ) -> bool:
        inserted = (
            await conn.execute(
                pg_insert(runs)
                .values(
                    id=run_id,
                    schedule_id=schedule_id,
                    tenant_id=tenant,
                    scheduled_for=nominal,
                    planned_for=planned,
                    status=status.value,
                    trigger=trigger.value,
                )
                .on_conflict_do_nothing()
                .returning(runs.c.id)
            )
        ).first()
        if inserted is not None and trigger is Trigger.SCHEDULE:
            await conn.execute(
                update(schedules)
                .where(schedules.c.id == schedule_id)
                .values(
                    run_count=schedules.c.run_count + 1,
                    last_run_at=func.greatest(func.coalesce(schedules.c.last_run_at, nominal), nominal),
                )
            )
        return inserted is not None

    async def _due(self, conn: AsyncConnection, event: RunDue) -> None:
        d = event.data
        if d.trigger is Trigger.REPLAY:
            # A replay reopens the dead run under the same id; later outcomes move it forward again.
            await conn.execute(
                update(runs)
                .where(runs.c.id == d.run_id)
                .values(
                    status=RunStatus.QUEUED.value, trigger=Trigger.REPLAY.value, finished_at=None, updated_at=func.now()
                )
            )
        await self._insert_run(
            conn,
            run_id=d.run_id,
            schedule_id=d.schedule_id,
            tenant=d.tenant_id,
            nominal=d.nominal_time,
            planned=d.planned_time,
            trigger=d.trigger,
            status=RunStatus.QUEUED,
        )
        if d.final and d.trigger is Trigger.SCHEDULE:
            await self._complete(conn, d.schedule_id, d.schedule_version)

    async def _outcome(self, conn: AsyncConnection, d: RunOutcomeData) -> None:
        await self._insert_run(
            conn,
            run_id=d.run_id,
            schedule_id=d.schedule_id,
            tenant=d.tenant_id,
            nominal=d.nominal_time,
            planned=None,
            trigger=d.trigger,
            status=d.status,
        )
        await conn.execute(
            update(runs)
            .where(runs.c.id == d.run_id, _rank(runs.c.status) < literal(_RANK[d.status]))
            .values(
                status=d.status.value,
                updated_at=func.now(),
                finished_at=d.finished_at if _RANK[d.status] == 3 else None,
            )
        )
        values = dict(
            worker=d.worker,
            started_at=d.started_at,
            finished_at=d.finished_at,
            http_status=d.http_status,
            duration_ms=d.duration_ms,
            error=d.error,
            response_excerpt=d.response_excerpt,
        )
        await conn.execute(
            pg_insert(run_attempts)
            .values(run_id=d.run_id, attempt=d.attempt, **values)
            .on_conflict_do_update(index_elements=[run_attempts.c.run_id, run_attempts.c.attempt], set_=values)
        )

    async def _skipped(self, conn: AsyncConnection, event: RunSkipped) -> None:
        d = event.data
        if d.run_id is not None:
            await self._insert_run(
                conn,
                run_id=d.run_id,
                schedule_id=d.schedule_id,
                tenant=d.tenant_id,
                nominal=d.first_nominal,
                planned=None,
                trigger=Trigger.SCHEDULE,
                status=RunStatus.SKIPPED,
            )
        if d.final and d.schedule_version is not None:
            await self._complete(conn, d.schedule_id, d.schedule_version)

    async def _complete(self, conn: AsyncConnection, schedule_id: Any, version: int) -> None:
        """The planner has nothing left to fire for this version of the schedule."""
        await conn.execute(
            update(schedules)
            .where(
                schedules.c.id == schedule_id,
                schedules.c.status == ScheduleStatus.ACTIVE.value,
                schedules.c.version == version,
            )
            .values(status=ScheduleStatus.COMPLETED.value)
        )

    async def _cancelled(self, conn: AsyncConnection, event: RunCancelled) -> None:
        d = event.data
        skipped = (
            await conn.execute(
                update(runs)
                .where(runs.c.id == d.run_id, runs.c.status == RunStatus.QUEUED.value)
                .values(status=RunStatus.SKIPPED.value, updated_at=func.now(), finished_at=func.now())
                .returning(runs.c.trigger)
            )
        ).first()
        if skipped is not None and skipped.trigger == Trigger.SCHEDULE.value:
            await conn.execute(
                update(schedules)
                .where(schedules.c.id == d.schedule_id, schedules.c.run_count > 0)
                .values(run_count=schedules.c.run_count - 1)
            )


def main(settings: Settings) -> None:
    asyncio.run(serve_with_database(settings, Recorder, settings.recorder_port))
