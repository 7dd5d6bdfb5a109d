"""``chime replay``: re-publish dead runs, or a range of a topic, with filters (the operator's repair tool).

- ``chime replay dlq [--tenant T] [--schedule ID] [--status-code N] [--limit N]`` requests replays of dead
  entries exactly as ``POST /api/dlq/replay`` does (through the outbox; the DLQ service paces them).
- ``chime replay topic NAME --from-time T [--to-time T] [--schedule ID] [--tenant T] [--to-topic NAME]
  [--dry-run]`` re-produces the records of a topic in a time range, key, value and headers unchanged, so a
  re-produced ``run.due`` is delivered again under the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from aiokafka import TopicPartition
from sqlalchemy import distinct, select

from shared.kafka import build_consumer, build_producer
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class TopicRange:
    topic: str
    since: datetime
    until: datetime | None = None
    schedule_id: str | None = None
    tenant: str | None = None
    target: str | None = None
    dry_run: bool = False


async def replay_topic(settings: Settings, r: TopicRange) -> int:
    """Re-produce matching records; returns how many (or would be, with ``dry_run``)."""
    producer = build_producer(settings)
    consumer = build_consumer(settings, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    try:
        partitions = await producer.partitions_for(r.topic)
        tps = [TopicPartition(r.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(r.since.timestamp() * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        if r.until is not None:
            stops = await consumer.offsets_for_times({tp: int(r.until.timestamp() * 1000) for tp in tps})
            ends = {tp: (stops[tp].offset if stops[tp] is not None else ends[tp]) for tp in tps}
        pending = {}
        for tp in tps:
            start = starts[tp]
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                pending[tp] = ends[tp]
            else:
                consumer.pause(tp)
        count = 0
        while pending:
            batch = await consumer.getmany(*pending.keys(), timeout_ms=1000)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= pending.get(tp, 0):
                        continue
                    headers = dict(record.headers)
                    if r.schedule_id and (record.key or b"").decode() != r.schedule_id:
                        continue
                    if r.tenant and headers.get("tenant", b"").decode() != r.tenant:
                        continue
                    count += 1
                    if not r.dry_run:
                        await producer.send_and_wait(
                            r.target or r.topic, record.value, key=record.key, headers=list(record.headers)
                        )
                if records and records[-1].offset + 1 >= pending.get(tp, 0):
                    pending.pop(tp, None)
                    consumer.pause(tp)
        return count
    finally:
        await consumer.stop()
        await producer.stop()


async def replay_dlq(
    settings: Settings, *, tenant: str | None, schedule_id: uuid.UUID | None, http_status: int | None, limit: int
) -> int:
    """Request replays of dead entries, tenant by tenant, through the same path as the API."""
    from services.api.db.dlq_repo import DlqFilter, DlqRepository
    from services.api.outbox import OutboxRelay
    from shared.db.engine import create_engine
    from shared.db.tables import dlq_entries

    engine = create_engine(settings)
    relay = OutboxRelay(settings, engine)
    try:
        async with engine.connect() as conn:
            query = select(distinct(dlq_entries.c.tenant_id)).where(dlq_entries.c.status == "dead")
            tenants = [tenant] if tenant else list((await conn.execute(query)).scalars())
        repo = DlqRepository(engine, relay.notify)
        flt = DlqFilter(schedule_id=schedule_id, http_status=http_status)
        total = 0
        for t in tenants:
            total += await repo.replay_matching(t, flt, limit=limit - total)
            if total >= limit:
                break
        # Publish the commands now rather than waiting for an API process's relay.
        while await relay.relay_once():
            pass
        return total
    finally:
        await relay.stop()
        await engine.dispose()


def run_topic(settings: Settings, r: TopicRange) -> int:
    return asyncio.run(replay_topic(settings, r))


def run_dlq(
    settings: Settings, *, tenant: str | None, schedule_id: uuid.UUID | None, http_status: int | None, limit: int
) -> int:
    return asyncio.run(
        replay_dlq(settings, tenant=tenant, schedule_id=schedule_id, http_status=http_status, limit=limit)
    )
