"""Scale: many schedules in one planner, the memory it takes, and how soon it fires on time after a SIGKILL.

The schedules are written to ``chime.schedules`` the way the API's outbox relay writes them: a million creates
through the API would take over an hour at the API's rate, and the API is measured by its own scenario. Only the
planner runs; its ``run.due`` records are the measurement (no executor calls them), read back from the topic:

- memory: the planner's RSS once every schedule is in its heap (and its peak);
- after a SIGKILL and an immediate restart: when it is ready again, and when it publishes its first run on time
  (the record's broker timestamp no later than the run's planned time);
- nothing lost: every fire whose nominal time falls in the window around the kill is published, before the kill
  or after it (the schedules use ``fire_all`` with a 10-minute grace, so a late fire is still a fire).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.scenarios import Env, say
from shared.events import CONTENT_TYPE, ScheduleUpserted, encode_event
from shared.events.schedule import ScheduleState
from shared.settings import Settings
from shared.topics import RUNS_DUE, SCHEDULES, delete_topics, topic_name
from tests.e2e.stack import Stack
from tests.integration.helpers import drop_database, read_all

_TENANTS = 10
_SEND_CHUNK = 20_000
# Fires whose nominal time is this long before the kill are checked too (they were announced just before it).
_BEFORE_KILL = timedelta(seconds=10)


def _schedule_id(prefix: int, n: int) -> uuid.UUID:
    return uuid.UUID(int=(prefix << 64) | n)


class Plan:
    """The schedules, laid out so that every fire time is arithmetic: schedule n every ``interval`` s from
    ``base + n·interval/count``, so fires are spread evenly over the interval."""

    def __init__(self, count: int, interval: int, base: datetime) -> None:
        self.count = count
        self.interval = interval
        self.base = base
        self.prefix = uuid.uuid4().int >> 64
        self._step_ms = interval * 1000 / count

    def anchor(self, n: int) -> datetime:
        return self.base + timedelta(milliseconds=int(n * self._step_ms))

    def fires(self, first: datetime, last: datetime) -> set[tuple[str, datetime]]:
        """Every (schedule id, nominal time) in [first, last]."""
        step = timedelta(seconds=self.interval)
        out: set[tuple[str, datetime]] = set()
        for n in range(self.count):
            anchor = self.anchor(n)
            k = max(0, -((anchor - first) // step))
            at = anchor + k * step
            while at <= last:
                if at >= first:
                    out.add((str(_schedule_id(self.prefix, n)), at))
                at += step
        return out


def _records(plan: Plan, created: datetime) -> Iterator[tuple[bytes, bytes, str]]:
    """(key, value, tenant) of each schedule's upsert, from one template rather than a model per schedule."""
    template = ScheduleState.model_validate(
        {
            "id": str(_schedule_id(plan.prefix, 0)),
            "tenant_id": "t",
            "name": "scale",
            "type": "interval",
            "interval_seconds": plan.interval,
            "start_at": plan.base,
            "misfire_policy": "fire_all",
            "misfire_grace_seconds": 600,
            "payload": {"url": "http://127.0.0.1:9/scale"},
            "status": "active",
            "version": 1,
            "created_at": created,
            "updated_at": created,
        }
    )
    event = json.loads(encode_event(ScheduleUpserted(subject="s", tenant="t", time=created, data=template)))
    for n in range(plan.count):
        sid = str(_schedule_id(plan.prefix, n))
        tenant = f"scale-{n % _TENANTS}"
        data = {**event["data"], "id": sid, "tenant_id": tenant, "name": f"scale-{n}"}
        data["start_at"] = plan.anchor(n).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        value = {**event, "id": str(uuid.uuid4()), "subject": sid, "tenant": tenant, "data": data}
        yield sid.encode(), json.dumps(value, separators=(",", ":")).encode(), tenant


async def _write(settings: Settings, records: Iterator[tuple[bytes, bytes, str]]) -> float:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    started = time.monotonic()
    try:
        topic = topic_name(settings, SCHEDULES)
        await _leaders_known(producer, topic)
        futures = []
        for key, value, tenant in records:
            headers = [("tenant", tenant.encode()), ("content-type", CONTENT_TYPE.encode())]
            futures.append(await producer.send(topic, value, key=key, headers=headers))
            if len(futures) >= _SEND_CHUNK:
                await asyncio.gather(*futures)
                futures = []
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def _leaders_known(producer: AIOKafkaProducer, topic: str) -> None:
    """Wait (briefly) until every partition of a just-created topic has a leader, rather than retry sends."""
    for _ in range(50):
        partitions = await producer.partitions_for(topic)
        cluster = producer.client.cluster
        if all((cluster.leader_for_partition(TopicPartition(topic, p)) or -1) >= 0 for p in partitions):
            return
        await asyncio.sleep(0.2)
        await producer.client.force_metadata_update()


async def _ingested(settings: Settings) -> bool:
    """Whether the planner has committed every record of ``chime.schedules`` (its heap count alone cannot say:
    fires in flight are out of the heap for a moment)."""
    topic = topic_name(settings, SCHEDULES)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=f"{settings.topic_prefix}planner", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            if ends[tp] and (await consumer.committed(tp) or 0) < ends[tp]:
                return False
        return True
    finally:
        await consumer.stop()


async def _heap_entries(stack: Stack) -> int | None:
    entries = (await stack.health("planner")).get("heap_entries")
    return int(entries) if isinstance(entries, int) else None


def _memory(pid: int) -> dict[str, float]:
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB → MiB
    return {"rss_mib": round(fields.get("VmRSS", 0), 1), "peak_rss_mib": round(fields.get("VmHWM", 0), 1)}


async def read_runs_due(settings: Settings) -> list[tuple[str, datetime, datetime, int]]:
    """Every run.due record so far: (schedule id, nominal, planned, broker timestamp in ms)."""
    out: list[tuple[str, datetime, datetime, int]] = []
    for record in await read_all(settings, topic_name(settings, RUNS_DUE)):
        event = json.loads(record.value or b"{}")
        if event.get("type") == "dev.chime.run.due.v1":
            data = event["data"]
            nominal = datetime.fromisoformat(data["nominal_time"])
            planned = datetime.fromisoformat(data["planned_time"])
            out.append((data["schedule_id"], nominal, planned, record.timestamp))
    return out


async def chime_scale(env: Env, schedules: int, interval: int, after_kill: float) -> dict[str, Any]:
    settings = await env.settings()
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(settings, Path(tmp))
        try:
            return await _measure(settings, stack, schedules, interval, after_kill)
        finally:
            stack.stop_all()
            await delete_topics(settings)
            await drop_database(settings.database_url)


async def _measure(
    settings: Settings, stack: Stack, schedules: int, interval: int, after_kill: float
) -> dict[str, Any]:
    created = datetime.now(UTC).replace(microsecond=0)
    plan = Plan(schedules, interval, created + timedelta(seconds=5))
    say(f"chime scale: writing {schedules:,} schedules (every {interval} s) to the schedules topic")
    write_s = await _write(settings, _records(plan, created))
    stack.start("planner")
    await stack.wait_healthy("planner", timeout=120)
    started = time.monotonic()
    deadline = started + 120 + schedules / 1000
    while not await _ingested(settings) and time.monotonic() < deadline:
        await asyncio.sleep(2)
    entries = await _heap_entries(stack) or 0
    ingest_s = time.monotonic() - started
    say(f"chime scale: {entries:,} schedules in the planner's heap after {ingest_s:.0f} s; settling")
    await asyncio.sleep(5)
    memory = _memory(stack.procs["planner"].pid)
    say(f"chime scale: planner RSS {memory['rss_mib']:,.0f} MiB; SIGKILL and restart")
    killed = datetime.now(UTC)
    stack.kill("planner")
    stack.start("planner")
    await stack.wait_healthy("planner", timeout=after_kill)
    ready_s = (datetime.now(UTC) - killed).total_seconds()
    await asyncio.sleep(max(0.0, after_kill - ready_s))
    memory_after = _memory(stack.procs["planner"].pid)
    runs = await read_runs_due(settings)
    killed_ms = killed.timestamp() * 1000
    on_time = [ts for _, _, planned, ts in runs if ts >= killed_ms and ts <= planned.timestamp() * 1000]
    first_on_time_s = (min(on_time) - killed_ms) / 1000 if on_time else None
    # The window checked for losses ends early enough that its fires were due to be announced before reading.
    last = killed + timedelta(seconds=after_kill) - timedelta(seconds=5)
    expected = plan.fires(killed - _BEFORE_KILL, last)
    seen: dict[tuple[str, datetime], int] = {}
    for sid, nominal, _, _ in runs:
        seen[(sid, nominal)] = seen.get((sid, nominal), 0) + 1
    missing = len(expected - seen.keys())
    repeats = sum(seen.get(fire, 0) - 1 for fire in expected if seen.get(fire, 0) > 1)
    return {
        "schedules": schedules,
        "interval_s": interval,
        "write_s": round(write_s, 1),
        "ingest_s": round(ingest_s, 1),
        "heap_entries": entries,
        "memory": memory,
        "memory_after_restart": memory_after,
        "ready_after_kill_s": round(ready_s, 1),
        "first_on_time_fire_after_kill_s": round(first_on_time_s, 1) if first_on_time_s is not None else None,
        "expected_around_kill": len(expected),
        "missing_around_kill": missing,
        "repeated_around_kill": repeats,
    }
