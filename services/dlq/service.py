"""``chime dlq``: consumes ``chime.runs.dlq``, ``chime.dlq.commands`` and ``chime.runs.results``.

- A ``dlq.entry`` is stored (one row per run id; a run that dies again after a replay updates its row).
- A ``replay`` command re-publishes the run to ``chime.runs.due`` under the same run id, with the attempt
  numbering continued and a fresh budget whose age counts from the request. Replays are paced
  (``CHIME_DLQ_REPLAY_PER_SECOND``) so a bulk replay cannot flood a recovering endpoint.
- A success of a replayed run marks its entry ``resolved``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from aiokafka import AIOKafkaProducer, ConsumerRecord
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import eventloop
from shared.consumer_runtime import ConsumerRuntime
from shared.db.tables import dlq_entries
from shared.dlq_states import IN_FLIGHT, DlqEvent, sources, target
from shared.errors import EventDecodeError
from shared.events import (
    CONTENT_TYPE,
    DlqEntry,
    Envelope,
    ReplayCommand,
    RunDue,
    RunSucceeded,
    decode_event,
    encode_event,
)
from shared.events.probe import ResultProbe
from shared.events.runs import RunDueData, Trigger
from shared.identity import instance_id
from shared.kafka import BULK_COMMIT_EVERY_S, BULK_FETCH
from shared.runid import new_entity_id
from shared.service_runner import serve_with_database
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import DLQ_COMMANDS, RUNS_DLQ, RUNS_DUE, RUNS_RESULTS, topic_name

_IN_FLIGHT = sorted(state.value for state in IN_FLIGHT)
_RESOLVABLE = sorted(state.value for state in sources(DlqEvent.REPLAY_SUCCEEDED))
_REDEADABLE = sorted(state.value for state in sources(DlqEvent.DEAD_LETTERED))

log = logging.getLogger(__name__)


class _Pacer:
    """At most ``rate`` replays per second."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self._interval


class DlqService:
    def __init__(self, settings: Settings, engine: AsyncEngine) -> None:
        self.settings = settings
        self.engine = engine
        self.registry = CollectorRegistry()
        self.stored = Counter("chime_dlq_entries_total", "Dead runs stored", registry=self.registry)
        self.replayed = Counter("chime_dlq_replays_total", "Replays published", registry=self.registry)
        self.resolved = Counter("chime_dlq_resolved_total", "Replayed runs that succeeded", registry=self.registry)
        self._pacer = _Pacer(settings.dlq_replay_per_second)
        self._results = topic_name(settings, RUNS_RESULTS)
        self.runtime = ConsumerRuntime(
            settings,
            service="dlq",
            group="dlq",
            instance=instance_id(settings, "dlq"),
            topics=[topic_name(settings, RUNS_DLQ), topic_name(settings, DLQ_COMMANDS), self._results],
            handler=self.handle_records,
            registry=self.registry,
            engine=engine,
            max_records=200,
            max_poll_records=200,
            commit_every_s=BULK_COMMIT_EVERY_S,
            **BULK_FETCH,
        )

    def stop(self) -> None:
        self.runtime.stop()

    async def run(self) -> None:
        await self.runtime.run(housekeeping=self.prune, every_s=600)

    async def health(self) -> tuple[bool, dict[str, object]]:
        return await self.runtime.health()

    async def handle_records(self, records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        producer = self.runtime.producer
        assert producer is not None  # noqa: S101 - the runtime starts it before any record arrives
        for record in records:
            raw = record.value or b""
            if record.topic == self._results and not _replay_success(raw):
                continue  # only a replayed run's success changes a dead letter
            try:
                event = decode_event(raw)
            except EventDecodeError as exc:
                await self.runtime.set_aside(record, f"undecodable: {exc}")
                continue
            await self.handle(producer, event)

    async def prune(self) -> int:
        """Delete entries past ``CHIME_RUN_RETENTION_DAYS`` (never one whose replay is under way)."""
        cutoff = utcnow() - timedelta(days=self.settings.run_retention_days)
        async with self.engine.begin() as conn:
            done = await conn.execute(
                delete(dlq_entries).where(dlq_entries.c.dead_at < cutoff, dlq_entries.c.status.not_in(_IN_FLIGHT))
            )
        return int(done.rowcount)

    async def handle(self, producer: AIOKafkaProducer, event: Envelope) -> None:
        if isinstance(event, DlqEntry):
            async with self.engine.begin() as conn:
                await self._store(conn, event)
            self.stored.inc()
        elif isinstance(event, ReplayCommand):
            await self._replay(producer, event)
        elif isinstance(event, RunSucceeded) and event.data.trigger is Trigger.REPLAY:
            async with self.engine.begin() as conn:
                done = await conn.execute(
                    update(dlq_entries)
                    .where(dlq_entries.c.run_id == event.data.run_id, dlq_entries.c.status.in_(_RESOLVABLE))
                    .values(status=target(DlqEvent.REPLAY_SUCCEEDED).value, updated_at=utcnow())
                )
            if done.rowcount:
                self.resolved.inc()

    async def _store(self, conn: AsyncConnection, event: DlqEntry) -> None:
        d = event.data
        values: dict[str, Any] = {
            "tenant_id": d.run.tenant_id,
            "schedule_id": d.run.schedule_id,
            "scheduled_for": d.run.nominal_time,
            "trigger": d.run.trigger.value,
            "reason": d.reason,
            "last_http_status": d.attempts[-1].http_status if d.attempts else None,
            "attempt_count": len(d.attempts),
            "attempts": [a.model_dump(mode="json") for a in d.attempts],
            "run": d.run.model_dump(mode="json"),
            "status": target(DlqEvent.DEAD_LETTERED).value,
            "dead_at": d.dead_at,
            "updated_at": utcnow(),
        }
        await conn.execute(
            pg_insert(dlq_entries)
            .values(id=new_entity_id(), run_id=d.run.run_id, **values)
            .on_conflict_do_update(
                index_elements=[dlq_entries.c.run_id],
                set_=values,
                # A resolved entry stays resolved, and an entry being replayed becomes dead again only through a
                # dead letter newer than its replay request (not a redelivery of the one that made it dead).
                where=and_(
                    dlq_entries.c.status.in_(_REDEADABLE),
                    or_(
                        dlq_entries.c.replay_requested_at.is_(None),
                        dlq_entries.c.replay_requested_at <= d.dead_at,
                    ),
                ),
            )
        )

    async def _replay(self, producer: AIOKafkaProducer, command: ReplayCommand) -> None:
        c = command.data
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(dlq_entries).where(dlq_entries.c.id == c.entry_id, dlq_entries.c.tenant_id == c.tenant_id)
                )
            ).first()
        if row is None or row.status not in _IN_FLIGHT or row.replay_requested_at != c.requested_at:
            # Deleted, already handled, or superseded by a newer request: nothing to do.
            return
        await self._pacer.wait()
        last = RunDueData.model_validate(row.run)
        next_attempt = max([a["attempt"] for a in row.attempts] or [last.attempt]) + 1
        now = utcnow()
        due = last.model_copy(
            update={
                "attempt": next_attempt,
                "budget_start_attempt": next_attempt,
                "age_from": c.requested_at,
                "not_before": None,
                "planned_time": now,
                "trigger": Trigger.REPLAY,
                "history": [],
                # Replays are outside the plan: the planner does not wait for them.
                "report_finish": False,
            }
        )
        event = RunDue(subject=str(due.schedule_id), tenant=due.tenant_id, time=now, data=due)
        headers = [("tenant", due.tenant_id.encode()), ("content-type", CONTENT_TYPE.encode())]
        await producer.send_and_wait(
            topic_name(self.settings, RUNS_DUE), encode_event(event), key=str(due.schedule_id).encode(), headers=headers
        )
        async with self.engine.begin() as conn:
            await conn.execute(
                update(dlq_entries)
                .where(dlq_entries.c.id == c.entry_id)
                .values(replay_count=dlq_entries.c.replay_count + 1, updated_at=now)
            )
        self.replayed.inc()


def main(settings: Settings) -> None:
    eventloop.run(serve_with_database(settings, DlqService, settings.dlq_port))


def _replay_success(raw: bytes) -> bool:
    # Nearly every result is a scheduled run's: a record without the word is passed over without being parsed
    # (the recorder, which reads every result, sets aside one that cannot be read).
    if b'"replay"' not in raw:
        return False
    try:
        return ResultProbe.model_validate_json(raw).is_replay_success()
    except ValueError:
        return True  # let handle() report it
