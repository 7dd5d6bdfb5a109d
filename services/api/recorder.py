"""``chime recorder``: writes run history from ``chime.runs.due`` and ``chime.runs.results`` in batches.

Idempotent: a run row is created once (by whichever event arrives first), statuses only move forward, and
an attempt row is keyed by (run, attempt), so re-delivered records change nothing. Offsets are committed
after the batch's transaction commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from aiokafka import ConsumerRecord
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.run_batch import RunBatch
from services.api.run_writes import count_skip, notify_events, write_batch
from shared import eventloop
from shared.consumer_runtime import ConsumerRuntime
from shared.db.tables import runs, schedule_stats
from shared.errors import EventDecodeError
from shared.events import (
    Envelope,
    RunAttemptFailed,
    RunCancelled,
    RunDeadLettered,
    RunDue,
    RunSkipped,
    RunSucceeded,
    decode_event,
)
from shared.events.probe import DueRow, probe_due_row
from shared.events.runs import RunStatus, Trigger
from shared.events.schedule import ScheduleStatus
from shared.identity import instance_id
from shared.kafka import BULK_COMMIT_EVERY_S, BULK_FETCH
from shared.service_runner import serve_with_database
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import RUNS_DUE, RUNS_RESULTS, topic_name

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 600.0
_PRUNE_BATCH = 5_000

# The recorder owns ``schedule_stats``; it reads ``schedules`` (the API's) only to skip runs of unknown schedules
# and to complete the version that is still current.
_COUNT_ONE = text(
    """
    INSERT INTO schedule_stats AS st (schedule_id, run_count, last_run_at)
    SELECT s.id, 1, :nominal FROM schedules AS s WHERE s.id = :sid
    ON CONFLICT (schedule_id) DO UPDATE
    SET run_count = st.run_count + 1, last_run_at = greatest(coalesce(st.last_run_at, :nominal), :nominal)
    """
)
_COMPLETE = text(
    f"""
    INSERT INTO schedule_stats AS st (schedule_id, completed_version)
    SELECT s.id, s.version FROM schedules AS s
    WHERE s.id = :sid AND s.version = :version AND s.status = '{ScheduleStatus.ACTIVE.value}'
    ON CONFLICT (schedule_id) DO UPDATE SET completed_version = excluded.completed_version
    """  # noqa: S608 - the only interpolation is a fixed enum value
)


class Recorder:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = CollectorRegistry()
        self.recorded = Counter("chime_recorder_events_total", "Events recorded", ["type"], registry=self.registry)
        self._due_topic = topic_name(settings, RUNS_DUE)
        self.batch_seconds = Histogram("chime_recorder_batch_seconds", "Batch write time", registry=self.registry)
        self.runtime = ConsumerRuntime(
            settings,
            service="recorder",
            group="recorder",
            instance=instance_id(settings, "recorder"),
            topics=[self._due_topic, topic_name(settings, RUNS_RESULTS)],
            handler=self.handle,
            registry=self.registry,
            engine=engine,
            max_records=1000,
            max_poll_records=1000,
            commit_every_s=BULK_COMMIT_EVERY_S,
            **BULK_FETCH,
        )

    def stop(self) -> None:
        self.runtime.stop()

    async def run(self) -> None:
        await self.runtime.run(housekeeping=self.prune, every_s=_PRUNE_EVERY_S)

    async def health(self) -> tuple[bool, dict[str, object]]:
        return await self.runtime.health()

    async def handle(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        """Write a batch of records; undecodable ones are set aside in quarantine first."""
        events: list[Envelope | DueRow] = []
        for record in records:
            raw = record.value or b""
            row = probe_due_row(raw) if record.topic == self._due_topic else None
            if row is not None:
                events.append(row)
                continue
            try:
                events.append(decode_event(raw))
            except EventDecodeError as exc:
                await self.runtime.set_aside(record, f"undecodable: {exc}")
        with self.batch_seconds.time():
            await self.write_events(events)

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
        # The figures per minute (kept by triggers as runs are written) go with the runs they counted.
        async with self.engine.begin() as conn:
            for table in ("run_minutes", "run_minute_lags"):
                await conn.execute(text(f"DELETE FROM {table} WHERE minute < :cutoff"), {"cutoff": cutoff})  # noqa: S608
        if total:
            log.info("pruned %d runs older than %d days", total, self.settings.run_retention_days)
        return total

    async def write(self, values: list[bytes]) -> None:
        """Write raw records (undecodable ones are skipped with a log line; ``handle`` quarantines them instead)."""
        events: list[Envelope] = []
        for raw in values:
            try:
                events.append(decode_event(raw))
            except EventDecodeError:
                log.error("undecodable record skipped", extra={"raw": raw[:2048]})
        await self.write_events(events)

    async def write_events(self, events: Sequence[Envelope | DueRow]) -> None:
        """Write a batch of events in one transaction (a first-hand ``run.due`` may come as its row values)."""
        async with self.engine.begin() as conn:
            batch = RunBatch()
            notices: list[tuple[str, str, str, str, str]] = []
            for event in events:
                if isinstance(event, RunDeadLettered | RunSkipped):
                    kind = "run.dead_lettered" if isinstance(event, RunDeadLettered) else "run.skipped"
                    notices.append((event.tenant, kind, event.subject, event.id, event.data.model_dump_json()))
                if isinstance(event, DueRow | RunDue) and event.data.trigger is not Trigger.REPLAY:
                    batch.add_due(event.data)
                    if event.data.final and event.data.trigger is Trigger.SCHEDULE:
                        batch.add_completion(event.data.schedule_id, event.data.schedule_version)
                elif isinstance(event, RunSucceeded | RunAttemptFailed | RunDeadLettered):
                    batch.add_outcome(event.data)
                elif isinstance(event, RunDue | RunCancelled | RunSkipped):
                    # These depend on what came before them: apply the batch so far first.
                    await self._flush(conn, batch)
                    batch = RunBatch()
                    if isinstance(event, RunDue):
                        await self._replay(conn, event)
                    elif isinstance(event, RunCancelled):
                        await self._cancelled(conn, event)
                    else:
                        await self._skipped(conn, event)
                else:
                    continue
                self.recorded.labels(event.type).inc()
            await self._flush(conn, batch)
            if notices:
                await notify_events(conn, notices)

    async def _flush(self, conn: AsyncConnection, batch: RunBatch) -> None:
        """Write a segment with one statement per kind of change."""
        await write_batch(conn, batch)
        for schedule_id, version in batch.completions.items():
            await self._complete(conn, schedule_id, version)

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
            await conn.execute(_COUNT_ONE, {"sid": schedule_id, "nominal": nominal})
        return inserted is not None

    async def _replay(self, conn: AsyncConnection, event: RunDue) -> None:
        """A replay reopens the dead run under the same id; later outcomes move it forward again."""
        d = event.data
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

    async def _skipped(self, conn: AsyncConnection, event: RunSkipped) -> None:
        d = event.data
        counted = True
        if d.run_id is not None:
            # A single skip has a run row: a repeated event inserts nothing and is not counted twice.
            counted = await self._insert_run(
                conn,
                run_id=d.run_id,
                schedule_id=d.schedule_id,
                tenant=d.tenant_id,
                nominal=d.first_nominal,
                planned=None,
                trigger=Trigger.SCHEDULE,
                status=RunStatus.SKIPPED,
            )
        if counted:
            await count_skip(conn, d.schedule_id, d.count, d.last_nominal, d.reason.value)
        if d.final and d.schedule_version is not None:
            await self._complete(conn, d.schedule_id, d.schedule_version)

    async def _complete(self, conn: AsyncConnection, schedule_id: Any, version: int) -> None:
        """The planner has nothing left to fire for this version of the schedule."""
        await conn.execute(_COMPLETE, {"sid": schedule_id, "version": version})

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
                update(schedule_stats)
                .where(schedule_stats.c.schedule_id == d.schedule_id, schedule_stats.c.run_count > 0)
                .values(run_count=schedule_stats.c.run_count - 1)
            )


def main(settings: Settings) -> None:
    eventloop.run(serve_with_database(settings, Recorder, settings.recorder_port))
