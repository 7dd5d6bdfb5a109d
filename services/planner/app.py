"""The planner's Faust app.

Design (docs/decisions.md, "Planner table writes"): Faust tables only accept writes inside stream
iteration, so the fire loop does not write the table. Each turn it publishes the partition's due fires as one batch of
ticks to the internal topic ``planner.ticks`` (co-partitioned with ``chime.schedules``); the ticks agent checks
each tick against the table, drops stale or duplicate ones, publishes ``run.due``, waits for the broker's ack,
and only then advances the table. A crash in between repeats a fire under the same run id; it never loses one.

Runs are announced ``CHIME_PLANNER_LOOKAHEAD_MS`` ahead of their planned time; the executor holds them until
that instant, so Kafka's latency stays out of the webhook lag. A change inside that window publishes
``run.cancelled``, which the executor honours.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.planner.entries import (
    Overlap,
    PlanEntry,
    Tick,
    TickBatch,
    advance,
    advance_past,
    apply_delete,
    apply_upsert,
    finished,
    opened,
    overlap_decision,
    plan_misfire,
    skip_over,
    tick_is_current,
)
from services.planner.heaps import PartitionHeaps
from services.planner.keylocks import KeyLocks
from services.planner.transport import PlannerApp
from shared.errors import EventDecodeError
from shared.events import (
    CONTENT_TYPE,
    BackfillCommand,
    Envelope,
    RunCancelled,
    RunDue,
    RunNowCommand,
    RunSkipped,
    ScheduleDeleted,
    ScheduleUpserted,
    decode_event,
    encode_event,
)
from shared.events.probe import ResultProbe
from shared.events.runs import RunCancelledData, RunDueData, RunSkippedData, SkipReason, Trigger
from shared.identity import instance_id
from shared.runid import planned_run_id
from shared.schedule import FireTime
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import PLANNER_COMMANDS, PLANNER_TICKS, RUNS_DUE, RUNS_RESULTS, SCHEDULES, topic_name

log = logging.getLogger(__name__)

_IDLE_SLEEP_S = 0.05
_TICK_BATCH_WINDOW = timedelta(milliseconds=20)
_TICK_BATCH_MAX = 500
# How long a command waits for its schedule to reach the planner before it is dropped as unknown.
_COMMAND_WAIT_S = 10.0


@dataclass
class PlannerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.fired = Counter("chime_planner_runs_due_total", "run.due events published", ["trigger"], registry=r)
        self.stale_ticks = Counter("chime_planner_stale_ticks_total", "Ticks dropped as stale", registry=r)
        self.cancelled = Counter("chime_planner_runs_cancelled_total", "Announced runs cancelled", registry=r)
        self.undecodable = Counter("chime_planner_undecodable_total", "Records set aside", ["topic"], registry=r)
        self.heap_size = Gauge("chime_planner_heap_entries", "Entries in the fire heaps", registry=r)
        self.lateness = Histogram(
            "chime_planner_publish_late_seconds",
            "How long after its planned time a run.due was published (0 when announced ahead, as it should be)",
            buckets=(0, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=r,
        )
        self.stage = Histogram(
            "chime_planner_tick_stage_seconds",
            "Time a due fire spends in each stage: fire_loop (heap due to tick sent), ticks_fetch (tick sent to"
            " consumed), ticks_queue (consumed to handled), due_ack (run.due sent to acknowledged)",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.skipped = Counter("chime_planner_skipped_total", "Planned fires not run", ["reason"], registry=r)
        self.recovered = Gauge("chime_planner_recovered", "1 once table recovery completed", registry=r)


class Planner:
    """Builds the Faust app and its agents; nothing starts until ``worker`` runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = PlannerMetrics()
        self.heaps = PartitionHeaps()
        self.recovered = False
        self._wake = asyncio.Event()
        self._keys = KeyLocks()
        # Runs that hold their schedule back (overlap skip/buffer_one), to the schedule's key. Derived from the
        # table like the heaps; an id left behind by a cancelled run costs one table read when its result comes.
        self._open_runs: dict[uuid.UUID, bytes] = {}
        self._lookahead = timedelta(milliseconds=settings.planner_lookahead_ms)
        self._partitions = settings.partitions
        ident = instance_id(settings, "planner")
        datadir = os.path.join(settings.planner_data_dir, ident)
        os.makedirs(datadir, exist_ok=True)
        self.app = PlannerApp(
            id=f"{settings.topic_prefix}planner",
            broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
            broker_credentials=_credentials(settings),
            store=settings.planner_store,
            datadir=datadir,
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            table_standby_replicas=0,
            web_enabled=False,
            consumer_group_instance_id=ident,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.consumer_session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.consumer_heartbeat_interval_ms / 1000,
            broker_rebalance_timeout=max(10.0, settings.consumer_session_timeout_ms / 1000),
            broker_request_timeout=max(30.0, settings.consumer_session_timeout_ms / 1000 + 5),
            broker_commit_interval=0.5,
            producer_acks=-1,
            # Runs are announced ahead of time (look-ahead), so a few ms of batching costs no lag and saves
            # a socket write per record.
            producer_linger=0.005,
            stream_wait_empty=False,
            processing_guarantee="at_least_once",
        )
        self.schedules_topic = self._source(SCHEDULES)
        self.ticks_topic = self._source(PLANNER_TICKS)
        self.commands_topic = self._source(PLANNER_COMMANDS)
        self.due_topic = self._source(RUNS_DUE)
        self.results_topic = self._source(RUNS_RESULTS)
        self.table = self.app.Table("schedule-state", partitions=settings.partitions, key_type=bytes, value_type=bytes)
        self.table.on_recover(self._on_recovered)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.app.agent(self.schedules_topic, name="schedules")(self._schedules_agent)
        # Each tick waits for its run.due to be acknowledged; concurrent instances keep that wait off the
        # throughput (Faust commits only offsets below the oldest unfinished event).
        self.app.agent(self.ticks_topic, name="ticks", concurrency=settings.planner_tick_concurrency)(self._ticks_agent)
        self.app.agent(self.commands_topic, name="commands")(self._commands_agent)
        self.app.agent(self.results_topic, name="results")(self._results_agent)
        self.app.task(self._fire_loop)

    def _source(self, spec: Any) -> Any:
        return self.app.topic(
            topic_name(self.settings, spec),
            partitions=self.settings.partitions,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )

    # -- table access ---------------------------------------------------------------------------------------

    def _get(self, key: bytes) -> PlanEntry | None:
        raw = self.table.get(key)
        return PlanEntry.model_validate_json(raw) if raw is not None else None

    def _put(self, key: bytes, entry: PlanEntry) -> None:
        self.table[key] = entry.model_dump_json().encode()
        if entry.open_run is not None:
            self._open_runs[entry.open_run] = key

    def partition_of(self, key: bytes) -> int:
        partition: int = (murmur2(key) & 0x7FFFFFFF) % self._partitions
        return partition

    def _schedule(self, partition: int, entry: PlanEntry) -> None:
        fire = entry.next_fire()
        if fire is None:
            return
        due = fire.planned - self._lookahead
        self.heaps.push(partition, due, entry.schedule.id, entry.version, fire.nominal)
        self._wake.set()

    # -- publishing -----------------------------------------------------------------------------------------

    async def _publish(self, key: bytes, event: Envelope) -> None:
        """Publish to ``runs.due`` and wait for the broker's acknowledgement."""
        headers = {"tenant": event.tenant.encode(), "content-type": CONTENT_TYPE.encode()}
        # force: inside an agent Faust would otherwise attach the record to the event and publish it only at the
        # next offset commit (up to broker_commit_interval later), which would put that delay into the lag.
        started = time.monotonic()
        fut = await self.due_topic.send(key=key, value=encode_event(event), headers=headers, force=True)
        await fut
        self.metrics.stage.labels("due_ack").observe(time.monotonic() - started)

    async def _publish_due(self, key: bytes, data: RunDueData) -> None:
        event = RunDue(subject=str(data.schedule_id), tenant=data.tenant_id, time=utcnow(), data=data)
        await self._publish(key, event)
        self.metrics.fired.labels(data.trigger.value).inc()
        self.metrics.lateness.observe(max(0.0, (utcnow() - data.planned_time).total_seconds()))

    async def _cancel(self, key: bytes, entry: PlanEntry, run_id: uuid.UUID, nominal: datetime, reason: str) -> None:
        data = RunCancelledData(
            run_id=run_id,
            schedule_id=entry.schedule.id,
            tenant_id=entry.schedule.tenant_id,
            nominal_time=nominal,
            reason=reason,
        )
        await self._publish(
            key, RunCancelled(subject=str(data.schedule_id), tenant=data.tenant_id, time=utcnow(), data=data)
        )
        self.metrics.cancelled.inc()

    # -- agents ---------------------------------------------------------------------------------------------

    async def _schedules_agent(self, stream: Any) -> None:
        async for event in stream.events():
            async with self._keys.hold(event.key):
                await self._on_schedule_change(event)

    async def _on_schedule_change(self, event: Any) -> None:
        key: bytes = event.key
        decoded = self._decode("schedules", event)
        now = utcnow()
        entry = self._get(key)
        if isinstance(decoded, ScheduleUpserted):
            new, cancels = apply_upsert(entry, decoded.data, now)
        elif isinstance(decoded, ScheduleDeleted):
            new, cancels = apply_delete(entry, decoded.data.version, now)
        else:
            return
        if new is None or new is entry:
            return
        for cancel in cancels:
            await self._cancel(key, new, cancel.run_id, cancel.nominal, "schedule changed")
            if new.open_run == cancel.run_id:
                # A cancelled run never reports an outcome; it must not hold the schedule back.
                new = new.model_copy(update={"open_run": None, "open_nominal": None})
        self._put(key, new)
        self._schedule(event.message.partition, new)

    async def _ticks_agent(self, stream: Any) -> None:
        async for event in stream.events():
            queued = time.monotonic() - (event.message.time_in or time.monotonic())
            self.metrics.stage.labels("ticks_fetch").observe(max(0.0, time.time() - queued - event.message.timestamp))
            self.metrics.stage.labels("ticks_queue").observe(max(0.0, queued))
            try:
                batch = TickBatch.parse(event.value)
            except ValueError:
                self._set_aside("ticks", event)
                continue
            # The ticks of a batch are different schedules: their run.due records share produce requests and
            # their acknowledgements are awaited together.
            await asyncio.gather(*(self._on_tick(tick, event.message.partition) for tick in batch.ticks))

    async def _on_tick(self, tick: Tick, partition: int) -> None:
        key = str(tick.schedule_id).encode()
        async with self._keys.hold(key):
            await self._fire(key, tick, partition)

    async def _fire(self, key: bytes, tick: Tick, partition: int) -> None:
        entry = self._get(key)
        fire = entry.next_fire() if entry is not None else None
        if entry is None or fire is None or not tick_is_current(entry, tick):
            self.metrics.stale_ticks.inc()
            return
        now = utcnow()
        misfire = plan_misfire(entry, now)
        if misfire is not None:
            after = advance_past(entry, misfire.last_considered, len(misfire.fire))
            done = after.next_nominal is None
            for n, missed in enumerate(misfire.fire, 1):
                final = done and n == len(misfire.fire)
                await self._publish_due(key, self._due_data(entry, missed, final=final))
                after = opened(after, planned_run_id(entry.schedule.id, missed.nominal), missed.nominal)
            if misfire.skipped_count and misfire.skipped_first and misfire.skipped_last:
                await self._publish_skipped(
                    key,
                    entry,
                    SkipReason.MISFIRE,
                    misfire.skipped_count,
                    misfire.skipped_first,
                    misfire.skipped_last,
                    final=done and not misfire.fire,
                )
        else:
            decision = overlap_decision(entry, now)
            if decision is Overlap.FIRE:
                after = advance(entry, fire)
                await self._publish_due(key, self._due_data(entry, fire, final=after.next_nominal is None))
                after = opened(after, planned_run_id(entry.schedule.id, fire.nominal), fire.nominal)
            else:
                after = skip_over(entry, fire, buffer=decision is Overlap.BUFFER)
                if decision is Overlap.SKIP:
                    final = after.next_nominal is None and after.buffered is None
                    await self._publish_skipped(
                        key,
                        entry,
                        SkipReason.OVERLAP,
                        1,
                        fire.nominal,
                        fire.nominal,
                        final=final,
                        run_id=planned_run_id(entry.schedule.id, fire.nominal),
                    )
        # The key's lock kept every other change to this entry out while the broker acknowledged.
        self._put(key, after)
        self._schedule(partition, after)

    def _due_data(self, entry: PlanEntry, fire: FireTime, *, final: bool) -> RunDueData:
        state = entry.schedule
        return RunDueData(
            run_id=planned_run_id(state.id, fire.nominal),
            schedule_id=state.id,
            tenant_id=state.tenant_id,
            schedule_version=state.version,
            nominal_time=fire.nominal,
            planned_time=fire.planned,
            trigger=Trigger.SCHEDULE,
            delivery=state.payload,
            retry_policy=state.retry_policy,
            final=final,
        )

    async def _publish_skipped(
        self,
        key: bytes,
        entry: PlanEntry,
        reason: SkipReason,
        count: int,
        first: datetime,
        last: datetime,
        *,
        final: bool,
        run_id: uuid.UUID | None = None,
    ) -> None:
        state = entry.schedule
        data = RunSkippedData(
            schedule_id=state.id,
            tenant_id=state.tenant_id,
            reason=reason,
            count=count,
            first_nominal=first,
            last_nominal=last,
            run_id=run_id,
            schedule_version=state.version,
            final=final,
        )
        event = RunSkipped(subject=str(state.id), tenant=state.tenant_id, time=utcnow(), data=data)
        headers = {"tenant": state.tenant_id.encode(), "content-type": CONTENT_TYPE.encode()}
        fut = await self.results_topic.send(key=key, value=encode_event(event), headers=headers, force=True)
        await fut
        self.metrics.skipped.labels(reason.value).inc(count)

    async def _results_agent(self, stream: Any) -> None:
        """Run outcomes, fed back for the overlap policies: a finished run frees its schedule.

        Every run's results pass through here, but only runs that hold their schedule back matter; a light
        parse and the open-run index keep the rest cheap.
        """
        async for event in stream.events():
            try:
                probe = ResultProbe.model_validate_json(event.value)
            except ValueError:
                continue
            if not probe.finishes_run() or probe.data.run_id not in self._open_runs:
                continue
            async with self._keys.hold(event.key):
                await self._on_run_finished(event.key, probe.data.run_id)
            self._open_runs.pop(probe.data.run_id, None)

    async def _on_run_finished(self, key: bytes, run_id: uuid.UUID) -> None:
        entry = self._get(key)
        if entry is None or entry.open_run != run_id:
            return
        after, buffered = finished(entry, run_id)
        if buffered is not None:
            now = utcnow()
            late = FireTime(nominal=buffered.nominal, planned=max(buffered.planned, now))
            final = after.next_nominal is None
            await self._publish_due(key, self._due_data(entry, late, final=final))
            after = opened(after, planned_run_id(entry.schedule.id, buffered.nominal), buffered.nominal)
        self._put(key, after)

    async def _commands_agent(self, stream: Any) -> None:
        async for event in stream.events():
            key: bytes = event.key
            decoded = self._decode("commands", event)
            if not isinstance(decoded, RunNowCommand | BackfillCommand):
                continue
            version = decoded.data.schedule_version if isinstance(decoded, RunNowCommand) else 1
            entry = await self._await_entry(key, version)
            if entry is None or entry.schedule.status.value == "deleted":
                log.warning("command for unknown or deleted schedule dropped", extra={"schedule": str(key)})
                continue
            if isinstance(decoded, RunNowCommand):
                await self._publish_due(key, RunDueData.model_validate(decoded.data.model_dump()))
                continue
            now = utcnow()
            for nominal in decoded.data.nominal_times:
                planned_by_schedule = entry.last_nominal is not None and entry.schedule.created_at < nominal
                if planned_by_schedule and entry.last_nominal is not None and nominal <= entry.last_nominal:
                    continue  # the plan already ran (or deliberately skipped) it
                fire = FireTime(nominal=nominal, planned=now)
                data = self._due_data(entry, fire, final=False).model_copy(
                    update={"trigger": Trigger.BACKFILL, "age_from": decoded.data.requested_at}
                )
                await self._publish_due(key, data)

    async def _await_entry(self, key: bytes, version: int) -> PlanEntry | None:
        """The schedule's entry once it has reached ``version``.

        A command and the schedule change before it travel on different topics, and the planner may read the
        command first (a run-now right after the create). The command waits here, unacknowledged, so a crash
        meanwhile re-delivers it.
        """
        deadline = time.monotonic() + _COMMAND_WAIT_S
        while True:
            entry = self._get(key)
            if entry is not None and entry.version >= version:
                return entry
            if time.monotonic() >= deadline:
                return entry
            await asyncio.sleep(0.02)

    def _decode(self, topic: str, event: Any) -> Envelope | None:
        """The record's event, or None once an undecodable record has been set aside."""
        try:
            return decode_event(event.value)
        except EventDecodeError:
            self._set_aside(topic, event)
            return None

    def _set_aside(self, topic: str, event: Any) -> None:
        self.metrics.undecodable.labels(topic).inc()
        log.error(
            "undecodable record set aside",
            extra={
                "topic": topic,
                "partition": event.message.partition,
                "offset": event.message.offset,
                "raw": bytes(event.value or b"")[:2048],
            },
        )

    # -- heap maintenance and the fire loop -----------------------------------------------------------------

    def _active_partitions(self) -> set[int]:
        name = topic_name(self.settings, SCHEDULES)
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == name}

    async def _on_recovered(self) -> None:
        """Rebuild the heaps from the table once recovery is complete (not merely on assignment)."""
        active = self._active_partitions()
        items: dict[int, list[tuple[datetime, uuid.UUID, int, datetime]]] = {p: [] for p in active}
        open_runs: dict[uuid.UUID, bytes] = {}
        for key, raw in self.table.items():
            partition = self.partition_of(key)
            if partition not in active:
                continue
            entry = PlanEntry.model_validate_json(raw)
            if entry.open_run is not None:
                open_runs[entry.open_run] = key
            fire = entry.next_fire()
            if fire is not None:
                items[partition].append(
                    (fire.planned - self._lookahead, entry.schedule.id, entry.version, fire.nominal)
                )
        for partition in self.heaps.partitions() - active:
            self.heaps.drop(partition)
        for partition, entries in items.items():
            self.heaps.replace(partition, entries)
        self._open_runs = open_runs
        self.recovered = True
        self.metrics.recovered.set(1)
        self._wake.set()
        log.info("heaps rebuilt", extra={"partitions": sorted(active), "entries": len(self.heaps)})

    async def _on_revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        name = topic_name(self.settings, SCHEDULES)
        for tp in revoked:
            if tp.topic == name:
                self.heaps.drop(tp.partition)

    async def _fire_loop(self) -> None:
        while True:
            now = utcnow()
            # Fires a few ms from their announce time go out with this turn's batch: the executor holds every
            # run until its planned time anyway, and fewer, larger tick records cost less than many small ones.
            batches: dict[int, list[Tick]] = {}
            for partition, item in self.heaps.pop_due(now + _TICK_BATCH_WINDOW):
                self.metrics.stage.labels("fire_loop").observe(max(0.0, (now - item.due).total_seconds()))
                tick = Tick(schedule_id=item.schedule_id, version=item.version, nominal=item.nominal)
                batches.setdefault(partition, []).append(tick)
            for partition, ticks in batches.items():
                for start in range(0, len(ticks), _TICK_BATCH_MAX):
                    batch = TickBatch(ticks=ticks[start : start + _TICK_BATCH_MAX])
                    await self.ticks_topic.send(
                        key=b"%d" % partition, value=batch.model_dump_json().encode(), partition=partition
                    )
            self.metrics.heap_size.set(len(self.heaps))
            earliest = self.heaps.earliest()
            wait = _IDLE_SLEEP_S if earliest is None else max(0.0, (earliest - utcnow()).total_seconds())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(wait, _IDLE_SLEEP_S))
            except TimeoutError:
                pass


def _credentials(settings: Settings) -> Any:
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    import ssl

    context = ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username or "",
        password=password,
        mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        ssl_context=context if settings.kafka_security_protocol == "SASL_SSL" else None,
    )
