"""The planner's Faust app.

Design (docs/decisions.md, "Planner: fire from the heap"): schedule definitions live in the ``definitions``
table, written by the schedules agent; what moves on every fire (next fire, run count, announced runs, the open
run) lives in the ``cursors`` table, which the fire loop writes itself through the key's partition. Parsed
entries are kept in memory per partition and rebuilt from both tables when recovery completes.

Each turn the fire loop pops what is due from the per-partition heaps, claims each schedule, publishes its
``run.due`` records together, waits for the broker's acknowledgement, and only then advances the cursor. A
crash in between repeats a fire under the same run id; it never loses one.

Runs are announced ``CHIME_PLANNER_LOOKAHEAD_MS`` ahead of their planned time; the executor holds them until
that instant, so Kafka's latency stays out of the webhook lag. A change inside that window publishes
``run.cancelled``, which the executor honours.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from faust.types import TP

from services.planner.batching import take_batches
from services.planner.changegate import ChangeGate
from services.planner.due_records import DueRecords
from services.planner.entries import (
    Cursor,
    PlanEntry,
    apply_delete,
    apply_upsert,
    cursor_of,
    fire_is_current,
    join,
    overlap_wait,
)
from services.planner.entrycache import EntryCache
from services.planner.firing import Firing, due_data, finish, fire
from services.planner.heaps import HeapItem, PartitionHeaps
from services.planner.keylocks import KeyLocks
from services.planner.metrics import PlannerMetrics
from services.planner.tables import PartitionerTable, PlannerTableManager
from services.planner.transport import PlannerApp, credentials
from shared.consumer_runtime import QuarantineTopic
from shared.errors import EventDecodeError
from shared.events import (
    CONTENT_TYPE,
    BackfillCommand,
    Envelope,
    RunCancelled,
    RunDue,
    RunFinishedCommand,
    RunNowCommand,
    RunSkipped,
    ScheduleDeleted,
    ScheduleUpserted,
    decode_event,
    encode_event,
)
from shared.events.runs import RunCancelledData, RunDueData, Trigger
from shared.events.schedule import ScheduleState
from shared.identity import instance_id
from shared.kafka import BATCH_LINGER_MS
from shared.partitioning import key_partition
from shared.publisher import OutBatch, OutRecord, send_all, topic_partitions
from shared.schedule import FireTime
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import PLANNER_COMMANDS, RUNS_DUE, RUNS_RESULTS, SCHEDULES, topic_name

log = logging.getLogger(__name__)

# While the change gate is closed (or partitions are being handed over) the fire loop looks again this often.
_IDLE_SLEEP_S = 0.05
# Otherwise it sleeps until its earliest fire is due, at most this long (its gauges are refreshed at least this
# often); a heap push wakes it at once.
_MAX_SLEEP_S = 1.0
_CONTENT_TYPE = CONTENT_TYPE.encode()
# Fires this close to their announce time go out with the current turn: the executor holds every run until
# its planned time anyway, and fuller produce batches cost less per record. At 1,000 fires/s a 20 ms window made
# 50 turns a second, each with its wake-up, its produce requests and a record batch per partition and topic.
_BATCH_WINDOW = timedelta(milliseconds=200)
# Fires per turn. A turn holds the event loop while it builds its records and holds its schedules until the broker
# acknowledged them, so after an outage (thousands due at once) one unbounded turn kept schedule changes waiting
# for seconds. The next turn follows at once; the earliest fires go first.
_TURN_LIMIT = 500
# A due fire whose schedule an agent is changing is looked at again this much later.
_CLAIM_RETRY = timedelta(milliseconds=5)
# A turn whose publish failed (broker down) puts its fires back and waits this long before the next try.
_RETRY_PAUSE_S = 0.5
# How long a stopping planner waits for the fire loop's last turn to be acknowledged.
_STOP_WAIT_S = 10.0
# A planner that owns no partition rejoins its group after this long, then backs off to the maximum.
_REJOIN_FIRST_S = 3.0
_REJOIN_MAX_S = 60.0
# After a broker outage, fires wait this long once the broker answers, so the changes the API accepted meanwhile
# (relayed from its outbox, which backs off to 5 s) are applied first. Never longer than the hold below.
_OUTAGE_SETTLE_S = 6.0
_GATE_MAX_HOLD_S = 60.0
_GATE_OFFSETS_TIMEOUT_S = 2.0
# A publish this slow means the broker was away (aiokafka waits for it rather than fail): treated as an outage.
_OUTAGE_PUBLISH_S = 3.0
# A change that arrives with its schedule's fires already overdue (relayed late, after an outage) waits this long
# before they fire, so a delete or pause right behind it in the topic is applied first.
_LATE_CHANGE_SETTLE = timedelta(seconds=1)
# How long a revocation waits for the fire turn under way and its cursor writes: well inside the rebalance timeout
# (10 s), so a planner whose broker is away does not hold up the group's rebalance past it.
_HANDOVER_WAIT_S = 4.0
# How long a command waits for its schedule to reach the planner before it is dropped as unknown.
_COMMAND_WAIT_S = 10.0
# Commands wait for their schedule concurrently, so one waiting run-now does not hold up the rest.
_COMMAND_CONCURRENCY = 16
# Schedule changes are applied in batches: one claim, one publish and one table write per batch instead of per
# change. A lone change waits at most this long for company, well inside the 100 ms a change has to arrive.
_CHANGE_BATCH = 500
_CHANGE_BATCH_WAIT_S = 0.005
# A change batch slower than this (from the broker's timestamp of its oldest record) is logged with where it waited.
_SLOW_CHANGE_S = 0.5
_SLOW_CHANGE_LOG_EVERY_S = 5.0

__all__ = ["Planner", "PlannerMetrics"]


@dataclass(slots=True)
class _Claimed:
    """A fire taken from the heap, its key claimed, waiting for its records' acknowledgement."""

    partition: int
    item: HeapItem
    firing: Firing


class Planner:
    """Builds the Faust app and its agents; nothing starts until ``worker`` runs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = PlannerMetrics()
        self._quarantine = QuarantineTopic(settings, "planner", self.metrics.registry)
        self.heaps = PartitionHeaps()
        self.recovered = False
        # Called each time entries are rebuilt (the process entry point freezes the heap there).
        self.after_recovery: Callable[[], None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._fire_loop_done = asyncio.Event()
        # Set between fire turns; a revocation waits for it so the turn's cursors are written before handing over.
        self._between_turns = asyncio.Event()
        self._between_turns.set()
        self._revoking = False
        self._keys = KeyLocks()
        # Parsed entries of the partitions this planner owns, the recently used ones; the tables hold them all.
        self.cache = EntryCache(settings.planner_cache_entries, self._load)
        self.gate = ChangeGate(self._change_offsets, settle_s=_OUTAGE_SETTLE_S, max_hold_s=_GATE_MAX_HOLD_S)
        # Commands waiting for their schedule to arrive, by key.
        self._awaiting: dict[bytes, asyncio.Event] = {}
        # When a slow schedule change was last logged, and how many slow batches went unlogged since.
        self._slow_logged_at = -_SLOW_CHANGE_LOG_EVERY_S
        self._slow_unlogged = 0
        self._lookahead = timedelta(milliseconds=settings.planner_lookahead_ms)
        self._partitions = settings.partitions
        ident = instance_id(settings, "planner")
        datadir = os.path.join(settings.planner_data_dir, ident)
        os.makedirs(datadir, exist_ok=True)
        self.app = PlannerApp(
            id=f"{settings.topic_prefix}planner",
            broker=[f"kafka://{server.strip()}" for server in settings.kafka_bootstrap.split(",")],
            broker_credentials=credentials(settings),
            store=settings.planner_store,
            datadir=datadir,
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=settings.partitions,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            table_standby_replicas=0,
            TableManager=PlannerTableManager,
            web_enabled=False,
            consumer_group_instance_id=ident,
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=settings.consumer_session_timeout_ms / 1000,
            broker_heartbeat_interval=settings.consumer_heartbeat_interval_ms / 1000,
            broker_rebalance_timeout=max(10.0, settings.consumer_session_timeout_ms / 1000),
            broker_request_timeout=max(30.0, settings.consumer_session_timeout_ms / 1000 + 5),
            broker_commit_interval=0.5,
            producer_acks=-1,
            # Runs are announced ahead of time (look-ahead), so batching costs no lag and saves a produce
            # request per handful of records.
            producer_linger=BATCH_LINGER_MS / 1000,
            stream_wait_empty=False,
            processing_guarantee="at_least_once",
        )
        self._due_topic = topic_name(settings, RUNS_DUE)
        self._due_records = DueRecords()
        self._results_topic = topic_name(settings, RUNS_RESULTS)
        self._schedules_name = topic_name(settings, SCHEDULES)
        self.schedules_topic = self._source(SCHEDULES)
        self.commands_topic = self._source(PLANNER_COMMANDS)
        table_opts: dict[str, Any] = {"partitions": settings.partitions, "key_type": bytes, "value_type": bytes}
        # Both tables are written in batches that span partitions, so each row goes to its key's partition.
        beacon = self.app.tables.beacon
        self.definitions = PartitionerTable(
            self.app, name="schedule-definitions", beacon=beacon, options=_rocksdb_options(settings), **table_opts
        )
        self.cursors = PartitionerTable(
            self.app, name="schedule-cursors", beacon=beacon, options=_rocksdb_options(settings), **table_opts
        )
        self.app.tables.add(self.definitions)
        self.app.tables.add(self.cursors)
        # Faust completes recovery for every table at once; one callback rebuilds the entries from both.
        self.definitions.on_recover(self._on_recovered)
        self.app.on_partitions_revoked.connect(self._on_revoked)  # type: ignore[arg-type]
        self.app.agent(self.schedules_topic, name="schedules")(self._schedules_agent)
        self.app.agent(self.commands_topic, name="commands", concurrency=_COMMAND_CONCURRENCY)(self._commands_agent)
        self.app.task(self._fire_loop)
        self.app.task(self._hold_partitions)

    def _source(self, spec: Any) -> Any:
        return self.app.topic(
            topic_name(self.settings, spec),
            partitions=self.settings.partitions,
            key_serializer="raw",
            value_serializer="raw",
            internal=False,
        )

    # -- state ----------------------------------------------------------------------------------------------

    def entry(self, key: bytes) -> PlanEntry | None:
        """The parsed entry of a schedule in a partition this planner owns."""
        return self.cache.get(key_partition(key, self._partitions), key)

    def _load(self, partition: int, key: bytes) -> PlanEntry | None:
        """An entry not in memory, parsed from its table rows (written through on every change and fire)."""
        self.metrics.entry_reads.inc()
        raw = self.definitions.row(partition, key)
        if raw is None:
            return None
        stored = self.cursors.row(partition, key)
        return join(
            ScheduleState.model_validate_json(raw),
            Cursor.model_validate_json(stored) if stored is not None else None,
        )

    async def _store(self, changed: Iterable[tuple[int, bytes, PlanEntry]], *, definition: bool = False) -> None:
        """Keep entries in memory, write them through to the tables, and plan their next fires.

        A schedule change (``definition``) is always kept: Faust hands the agent a record only for a partition this
        planner owns, and it may do so a moment before the recovery callback has rebuilt that partition's entries
        (which then include this change, read back from the tables). A fire's cursor is dropped when its partition
        moved to another planner meanwhile: the new owner repeats that fire at worst.
        """
        rows: list[tuple[int, bytes, bytes]] = []
        definitions: list[tuple[int, bytes, bytes]] = []
        now = utcnow()
        for partition, key, entry in changed:
            if not self.cache.put(partition, key, entry, take=definition):
                continue
            if definition:
                definitions.append((partition, key, entry.schedule.model_dump_json().encode()))
            rows.append((partition, key, cursor_of(entry).model_dump_json().encode()))
            waiting = self._awaiting.get(key)
            if waiting is not None:
                waiting.set()
            nxt = entry.next_fire()
            if nxt is not None:
                due = nxt.planned - self._lookahead
                if definition and nxt.planned < now:
                    due = now + _LATE_CHANGE_SETTLE
                self.heaps.push(partition, due, key, entry.version, nxt.nominal)
                self._wake.set()
        if definitions:
            await self.definitions.write_many(definitions)
        await self.cursors.write_many(rows)

    # -- publishing -----------------------------------------------------------------------------------------

    async def _send_all(self, records: list[OutRecord]) -> list[tuple[OutBatch, Awaitable[Any]]]:
        """Hand records to the producer as one batch per partition; each batch's future resolves on the broker's
        acknowledgement (to its first record's metadata). A record too large for Kafka raises."""
        producer = self.app.kafka_producer()
        return await send_all(producer, await topic_partitions(producer, {r[0] for r in records}), records)

    def _records(self, key: bytes, firing: Firing, now: datetime, *, planned: bool = True) -> Iterator[OutRecord]:
        """The records of a firing; ``planned``: its runs are the plan's own (``due_data`` of the entry's version),
        not a command's, whose data came from elsewhere."""
        for run in firing.due:
            if planned and run.trigger is Trigger.SCHEDULE:
                # A fire of the schedule's plan: its record is the schedule version's, with the fire's values.
                value = self._due_records.encode(run, now)
            else:
                value = encode_event(RunDue(subject=str(run.schedule_id), tenant=run.tenant_id, time=now, data=run))
            yield self._due_topic, None, key, value, _headers(run.tenant_id)
        for skip in firing.skipped:
            event = RunSkipped(subject=str(skip.schedule_id), tenant=skip.tenant_id, time=now, data=skip)
            yield self._results_topic, None, key, encode_event(event), _headers(skip.tenant_id)

    async def _publish(self, records: Iterable[OutRecord]) -> None:
        """Publish records together and wait until the broker has acknowledged every one."""
        started = time.monotonic()
        out = list(records)
        if out:
            await asyncio.gather(*(ack for _, ack in await self._send_all(out)))
            self.metrics.publish_ack.observe(time.monotonic() - started)

    def _count(self, firing: Firing) -> None:
        now = utcnow()
        for run in firing.due:
            self.metrics.fired.labels(run.trigger.value).inc()
            self.metrics.lateness.observe(max(0.0, (now - run.planned_time).total_seconds()))
        for skip in firing.skipped:
            self.metrics.skipped.labels(skip.reason.value).inc(skip.count)

    # -- the fire loop --------------------------------------------------------------------------------------

    async def stop_firing(self) -> None:
        """Finish the turn under way (its cursors are written while the tables are still open), then stop."""
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._fire_loop_done.wait(), _STOP_WAIT_S)
            await asyncio.wait_for(self.cursors.flush(), _STOP_WAIT_S)
        except TimeoutError:
            log.warning("the fire loop did not stop within %.0f s", _STOP_WAIT_S)

    async def _fire_loop(self) -> None:
        try:
            await self._fire_until_stopped()
        finally:
            self._fire_loop_done.set()

    async def _fire_until_stopped(self) -> None:
        while not self._stopping:
            if not self._revoking and (self.gate.is_open or await self.gate.check(sorted(self.cache.owned()))):
                claimed = self._take_due()
                if claimed:
                    self._between_turns.clear()
                    try:
                        await self._fire(claimed)
                    finally:
                        self._between_turns.set()
            self.metrics.heap_size.set(len(self.heaps))
            self.metrics.cached.set(len(self.cache))
            earliest = self.heaps.earliest()
            overdue = (utcnow() - earliest).total_seconds() if earliest is not None else 0.0
            self.metrics.oldest_overdue.set(max(0.0, overdue))
            # A turn takes every fire due within the batch window, so sleeping until the earliest fire left is due
            # makes one turn per window (5 a second), not one per poll: at 1,000 fires/s a 50 ms poll made 20 turns
            # a second of 50 fires each, every one with its produce requests and changelog writes.
            if self._revoking or not self.gate.is_open:
                wait = _IDLE_SLEEP_S
            elif earliest is None:
                wait = _MAX_SLEEP_S
            else:
                wait = min(_MAX_SLEEP_S, max(0.0, (earliest - utcnow()).total_seconds()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    def _take_due(self) -> list[_Claimed]:
        """Pop what is due, drop stale heap items, and claim the rest; never waits."""
        now = utcnow()
        claimed: list[_Claimed] = []
        for partition, item in self.heaps.pop_due(now + _BATCH_WINDOW, _TURN_LIMIT):
            entry = self.cache.get(partition, item.key)
            if entry is None or not fire_is_current(entry, item.version, item.nominal):
                self.metrics.stale.inc()
                continue
            wait = overlap_wait(entry, now + _BATCH_WINDOW)
            if wait is not None:
                # Overlap is decided at the fire's time, not when it would be announced: the open run may end first.
                self.heaps.push(partition, wait, item.key, item.version, item.nominal)
                continue
            if not self._keys.try_claim(item.key):
                # An agent is changing this schedule right now: look again shortly. If the change moved the fire,
                # the item is stale by then and dropped above.
                self.heaps.push(partition, now + _CLAIM_RETRY, item.key, item.version, item.nominal)
                continue
            claimed.append(_Claimed(partition, item, fire(entry, now)))
        return claimed

    async def _fire(self, claimed: list[_Claimed]) -> None:
        started = time.monotonic()
        try:
            now = utcnow()
            await self._publish(r for c in claimed for r in self._records(c.item.key, c.firing, now))
            if time.monotonic() - started > _OUTAGE_PUBLISH_S:
                self.gate.close("the broker was unreachable", settle=True)
        except Exception:  # noqa: BLE001 - the fires go back on the heap and are tried again; nothing is lost
            log.exception("publishing %d due fires failed; retrying", len(claimed))
            self.gate.close("publishing failed", settle=True)
            for c in claimed:
                self.heaps.push(c.partition, c.item.due, c.item.key, c.item.version, c.item.nominal)
                self._keys.release(c.item.key)
            await asyncio.sleep(_RETRY_PAUSE_S)
            return
        try:
            for c in claimed:
                self._count(c.firing)
            await self._store((c.partition, c.item.key, c.firing.after) for c in claimed)
        finally:
            for c in claimed:
                self._keys.release(c.item.key)

    # -- agents ---------------------------------------------------------------------------------------------

    async def _schedules_agent(self, stream: Any) -> None:
        async for events in take_batches(stream, _CHANGE_BATCH, _CHANGE_BATCH_WAIT_S):
            taken = time.monotonic()
            changes: list[tuple[bytes, ScheduleUpserted | ScheduleDeleted]] = []
            for event in events:
                decoded = await self._decode(event)
                if isinstance(decoded, ScheduleUpserted | ScheduleDeleted):
                    # The topic's keys are raw bytes (the schedule id).
                    changes.append((cast("bytes", event.key), decoded))
            held = applied = taken
            if changes:
                async with self._keys.hold_many([key for key, _ in changes]):
                    held = time.monotonic()
                    await self._on_schedule_changes(changes)
                    applied = time.monotonic()
            for event in events:
                self._note_applied(event.message.partition, event.message.offset)
            self._note_slow_changes(events, taken, held, applied)

    def _note_applied(self, partition: int, offset: int) -> None:
        """Tell the gate, and count offsets passed over: changes are written one after another with no transaction
        markers, so a jump is records compacted away while the planner was behind, or records lost on the way."""
        unseen = self.gate.applied(partition, offset)
        if unseen:
            self.metrics.unseen_changes.inc(unseen)
            log.warning(
                "%d offsets of %s partition %d before %d were never applied (compacted while the planner was "
                "behind, or lost: `chime resync` republishes every schedule)",
                unseen,
                self._schedules_name,
                partition,
                offset,
            )

    def _note_slow_changes(self, events: list[Any], taken: float, held: float, applied: float) -> None:
        """A change must reach the plan within a second of its acknowledgement: say where a slow batch waited."""
        oldest = min(event.message.timestamp for event in events)  # seconds since the epoch, as Faust gives it
        queued = time.time() - (time.monotonic() - taken) - oldest
        self.metrics.change_delay.observe(max(0.0, time.time() - oldest))
        if queued <= _SLOW_CHANGE_S and applied - taken <= _SLOW_CHANGE_S:
            return
        # A backlog (a restart, an outage) makes every batch slow for a while: one line per interval says so.
        now = time.monotonic()
        if now - self._slow_logged_at < _SLOW_CHANGE_LOG_EVERY_S:
            self._slow_unlogged += 1
            return
        log.warning(
            "%d schedule changes took %.2f s to reach the plan: %.2f s before the planner read them, "
            "%.2f s waiting for fires of the same schedules, %.2f s applying and publishing "
            "(%d more slow batches since the last report)",
            len(events),
            queued + applied - taken,
            queued,
            held - taken,
            applied - held,
            self._slow_unlogged,
        )
        self._slow_logged_at, self._slow_unlogged = now, 0

    async def _on_schedule_changes(self, changes: list[tuple[bytes, ScheduleUpserted | ScheduleDeleted]]) -> None:
        """Apply changes in the order they came (a key may change more than once), then publish and store."""
        now = utcnow()
        changed: dict[bytes, PlanEntry] = {}
        records: list[OutRecord] = []
        for key, decoded in changes:
            entry = changed[key] if key in changed else self.entry(key)
            if isinstance(decoded, ScheduleUpserted):
                new, cancels = apply_upsert(entry, decoded.data, now)
            else:
                new, cancels = apply_delete(entry, decoded.data.version, now)
            if new is None or new is entry:
                continue
            for cancel in cancels:
                data = RunCancelledData(
                    run_id=cancel.run_id,
                    schedule_id=new.schedule.id,
                    tenant_id=new.schedule.tenant_id,
                    nominal_time=cancel.nominal,
                    reason="schedule changed",
                )
                event = RunCancelled(subject=str(data.schedule_id), tenant=data.tenant_id, time=now, data=data)
                records.append((self._due_topic, None, key, encode_event(event), _headers(data.tenant_id)))
                if new.open_run == cancel.run_id:
                    # A cancelled run never reports an outcome; it must not hold the schedule back.
                    new = new.model_copy(update={"open_run": None, "open_nominal": None})
            changed[key] = new
        await self._publish(records)
        self.metrics.cancelled.inc(len(records))
        await self._store(
            [(key_partition(key, self._partitions), key, entry) for key, entry in changed.items()], definition=True
        )

    async def _commands_agent(self, stream: Any) -> None:
        async for event in stream.events():
            key: bytes = event.key
            decoded = await self._decode(event)
            if isinstance(decoded, RunFinishedCommand):
                async with self._keys.hold(key):
                    await self._on_run_finished(key, decoded.data.run_id)
            elif isinstance(decoded, RunNowCommand | BackfillCommand):
                await self._on_command(key, decoded)

    async def _on_run_finished(self, key: bytes, run_id: uuid.UUID) -> None:
        entry = self.entry(key)
        if entry is None or entry.open_run != run_id:
            return
        firing = finish(entry, run_id, utcnow())
        await self._publish(self._records(key, firing, utcnow()))
        self._count(firing)
        await self._store([(key_partition(key, self._partitions), key, firing.after)])

    async def _on_command(self, key: bytes, command: RunNowCommand | BackfillCommand) -> None:
        version = command.data.schedule_version if isinstance(command, RunNowCommand) else 1
        entry = await self._await_entry(key, version)
        if entry is None or entry.schedule.status.value == "deleted":
            log.warning("command for unknown or deleted schedule dropped", extra={"schedule": key.decode()})
            return
        runs: list[RunDueData] = []
        if isinstance(command, RunNowCommand):
            runs.append(RunDueData.model_validate(command.data.model_dump()))
        else:
            now = utcnow()
            for nominal in command.data.nominal_times:
                planned_by_schedule = entry.last_nominal is not None and entry.schedule.created_at < nominal
                if planned_by_schedule and entry.last_nominal is not None and nominal <= entry.last_nominal:
                    continue  # the plan already ran (or deliberately skipped) it
                run = due_data(entry, FireTime(nominal=nominal, planned=now), final=False)
                runs.append(
                    run.model_copy(
                        update={
                            "trigger": Trigger.BACKFILL,
                            "age_from": command.data.requested_at,
                            "report_finish": False,
                        }
                    )
                )
        firing = Firing(entry, due=runs)
        await self._publish(self._records(key, firing, utcnow(), planned=False))
        self._count(firing)

    async def _await_entry(self, key: bytes, version: int) -> PlanEntry | None:
        """The schedule's entry once it has reached ``version``.

        A command and the schedule change before it travel on different topics, and the planner may read the
        command first (a run-now right after the create). The command waits here, unacknowledged, so a crash
        meanwhile re-delivers it; other commands go on meanwhile.
        """
        deadline = time.monotonic() + _COMMAND_WAIT_S
        while True:
            entry = self.entry(key)
            left = deadline - time.monotonic()
            if (entry is not None and entry.version >= version) or left <= 0:
                return entry
            arrived = self._awaiting.setdefault(key, asyncio.Event())
            try:
                await asyncio.wait_for(arrived.wait(), timeout=left)
            except TimeoutError:
                pass
            finally:
                if self._awaiting.get(key) is arrived:
                    del self._awaiting[key]

    async def _decode(self, event: Any) -> Envelope | None:
        """The record's event, or None once an undecodable record has been set aside in ``chime.quarantine``."""
        try:
            return decode_event(event.value)
        except EventDecodeError as exc:
            message = event.message
            original = message.headers or ()
            original = list(original.items()) if isinstance(original, dict) else list(original)
            headers = self._quarantine.headers(
                original, message.topic, message.partition, message.offset, f"undecodable: {exc}"
            )
            await self.app.producer.send(self._quarantine.topic, event.key, event.value, None, None, headers)
            return None

    # -- recovery and rebalancing ---------------------------------------------------------------------------

    def _active_partitions(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == self._schedules_name}

    def partitions_held(self) -> list[int]:
        """The partitions of ``chime.schedules`` this planner fires for (owned and rebuilt)."""
        return sorted(self._active_partitions() & self.cache.owned())

    def holds_partitions(self) -> bool:
        """Whether this planner owns partitions of ``chime.schedules`` and has rebuilt their entries (readiness)."""
        active = self._active_partitions()
        return self.recovered and bool(active) and active <= self.cache.owned()

    async def _hold_partitions(self) -> None:
        """Rejoin the group when this planner ends up owning nothing.

        The group leader assigns only the topics its metadata already lists. Right after the planner's own topics
        are created (and on a broker with many topics, where metadata is slow), that list can miss
        ``chime.schedules``: the assignment comes out empty, nothing triggers another rebalance, and the planner
        fires nothing. A member with no partition refreshes its metadata and rejoins, backing off to once a
        minute (a group with more planners than partitions leaves some idle by design).
        """
        wait = _REJOIN_FIRST_S
        while not self._stopping:
            await asyncio.sleep(wait)
            if not self.recovered or self._active_partitions():
                wait = _REJOIN_FIRST_S
                continue
            log.warning("the planner owns no partition of %s; rejoining its group", self._schedules_name)
            self.app.rejoin_group()
            wait = min(wait * 2, _REJOIN_MAX_S)

    async def _on_recovered(self) -> None:
        """Rebuild the heaps from the tables once recovery is complete (not merely on assignment).

        The heaps need each schedule's next fire, which its cursor holds: a cursor that is current for its
        definition is read as plain JSON, and only a schedule whose cursor is missing or older than its definition
        (a crash between the two writes) is parsed and re-planned. Entries themselves are parsed when they fire
        or change. Nothing awaits in between, so no change or fire interleaves with the rebuild.
        """
        started = time.monotonic()
        active = self._active_partitions()
        self.gate.close("recovering")
        for partition in self.heaps.partitions() - active:
            self.heaps.drop(partition)
        for partition in active:
            self.heaps.replace(partition, list(self._next_fires(partition)))
        self.cache.own(active)
        self.metrics.partitions.set(len(active))
        self.recovered = True
        self.metrics.recovered.set(1)
        if self.after_recovery is not None:
            self.after_recovery()
        self._wake.set()
        log.info(
            "heaps rebuilt",
            extra={
                "partitions": sorted(active),
                "entries": len(self.heaps),
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    async def _change_offsets(self, partitions: list[int]) -> dict[int, tuple[int | None, int | None]]:
        """(committed, high watermark) of each partition of ``chime.schedules``; asking for the committed offsets is
        also what tells the gate the broker answers again."""
        tps = [TP(self._schedules_name, p) for p in partitions]
        committed = await asyncio.wait_for(self.app.committed_offsets(tps), _GATE_OFFSETS_TIMEOUT_S)
        return {tp.partition: (committed.get(tp), self.app.highwater_of(tp)) for tp in tps}

    def _next_fires(self, partition: int) -> Iterator[tuple[datetime, bytes, int, datetime]]:
        """(announce time, key, version, nominal) of each schedule in the partition that has a next fire."""
        for key, raw in self.definitions.rows(partition):
            version = int(json.loads(raw)["version"])
            stored = self.cursors.row(partition, key)
            if stored is not None:
                cursor = json.loads(stored)
                if int(cursor["version"]) >= version:
                    nominal, planned = cursor.get("next_nominal"), cursor.get("next_planned")
                    if nominal is not None and planned is not None:
                        due = datetime.fromisoformat(planned) - self._lookahead
                        yield due, key, version, datetime.fromisoformat(nominal)
                    continue
            entry = join(
                ScheduleState.model_validate_json(raw),
                Cursor.model_validate_json(stored) if stored is not None else None,
            )
            nxt = entry.next_fire()
            if nxt is not None:
                yield nxt.planned - self._lookahead, key, entry.version, nxt.nominal

    async def _on_revoked(self, app: Any, revoked: Any, **_: Any) -> None:
        """Hand partitions over with their cursors written: the fire turn under way finishes (its cursors go to the
        changelog) and those writes are acknowledged before the partitions go, so the next owner, which reads the
        changelog only after every member has let go, does not fire the same times again."""
        gone = [tp.partition for tp in revoked if tp.topic == self._schedules_name]
        if not gone:
            return
        self._revoking = True
        try:
            async with asyncio.timeout(_HANDOVER_WAIT_S):
                await self._between_turns.wait()
                await self.cursors.flush()
        except TimeoutError:
            log.warning("handing over partitions %s with cursor writes unconfirmed", gone)
        finally:
            self._revoking = False
            self._wake.set()
        for partition in gone:
            self.heaps.drop(partition)
            self.cache.release(partition)
        self.gate.forget(gone)
        self.metrics.partitions.set(len(self.cache.owned()))


def _headers(tenant: str) -> list[tuple[str, bytes]]:
    return [("tenant", tenant.encode()), ("content-type", _CONTENT_TYPE)]


def _rocksdb_options(settings: Settings) -> dict[str, Any]:
    """Bounded memory per partition store: RocksDB's defaults (64 MB write buffers, a 2 GB block cache each)
    would let 2 tables x 12 partitions grow past the planner's whole budget."""
    return {
        "write_buffer_size": settings.planner_rocksdb_write_buffer_bytes,
        "max_write_buffer_number": 2,
        "block_cache_size": settings.planner_rocksdb_block_cache_bytes,
    }
