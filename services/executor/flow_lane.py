"""The executor's second consumer: runs of flows with a limit, each flow owned by one executor at a time.

``chime.runs.flow`` is keyed by [tenant, flow key], so all of a flow's runs reach the executor that owns its
partition, and that one executor's count of calls in flight and of starts per window is the flow's whole count.
When a partition moves, its calls in flight finish before the partition is given up, so the next owner never
overlaps them; its waiting runs are left uncommitted for the next owner.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge

from services.executor.flows import FlowGate, FlowId, FlowLimit, FlowLimits, release_once
from services.executor.offsets import PartitionOffsets, Rebalance
from services.executor.stops import StoppedSchedules
from shared.consumer_runtime import Stopping, started
from shared.errors import EventDecodeError
from shared.events import RunCancelled, RunDue, ScheduleStopped, decode_event
from shared.events.runs import RunDueData
from shared.kafka import build_group_consumer
from shared.publisher import PublisherStopped
from shared.settings import Settings
from shared.topics import RUNS_FLOW, topic_name

log = logging.getLogger(__name__)

_COMMIT_EVERY_S = 0.2
# Runs held in memory across all flows; past it the lane stops reading and the rest wait in Kafka.
_MAX_WAITING = 20_000
# A partition being given up waits this long at most for its calls in flight (within the rebalance timeout).
_REVOKE_WAIT_S = 8.0

# Delivers a run; calls its third argument once the call has ended (before the outcome is published).
Deliver = Callable[[bytes, RunDueData, Callable[[], None]], Coroutine[object, object, None]]
SetAside = Callable[[TopicPartition, int, bytes, bytes | None], None]
# Publishes what closes a withdrawn run (``Executor.withdrawal``): each result None once in Kafka.
Withdraw = Callable[[bytes, RunDueData, str], "asyncio.Future[list[BaseException | None]]"]


@dataclass(slots=True)
class _Waiting:
    tp: TopicPartition
    offset: int
    due: RunDueData


class FlowLane:
    def __init__(
        self,
        settings: Settings,
        worker_id: str,
        limits: FlowLimits,
        deliver: Deliver,
        set_aside: SetAside,
        withdraw: Withdraw,
        throttled: Counter,
        waiting: Gauge,
    ) -> None:
        self._settings = settings
        self._worker_id = worker_id
        self._limits = limits
        self._deliver = deliver
        self._set_aside = set_aside
        self._withdraw = withdraw
        self._stops = StoppedSchedules()
        self._throttled = throttled
        self._waiting_gauge = waiting
        self._default = FlowLimit(settings.default_flow_concurrency)
        self._topic = topic_name(settings, RUNS_FLOW)
        self._consumer: AIOKafkaConsumer | None = None
        self._gates: dict[FlowId, FlowGate[_Waiting]] = {}
        self._gate_tp: dict[FlowId, TopicPartition] = {}
        self._offsets = PartitionOffsets("flow lane")
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = defaultdict(set)
        # When each partition was last taken over: a flow seen soon after starts with a full rate window.
        self._assigned_at: dict[TopicPartition, float] = {}
        self._waiting = 0
        self._timer: asyncio.TimerHandle | None = None
        self._pump_soon = False
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        def consumer() -> AIOKafkaConsumer:
            built = build_group_consumer(
                self._settings,
                "executor-flows",
                self._worker_id,
                rebalance_timeout_ms=max(20_000, self._settings.consumer_session_timeout_ms),
                max_poll_records=500,
                # Its runs are due when they arrive: a fetch answers at the first record, and waits long while
                # no flow is limited, so an idle lane costs the executor next to nothing.
                fetch_min_bytes=1,
                fetch_max_wait_ms=500,
            )
            built.subscribe([self._topic], listener=Rebalance(self.on_revoked, self.on_assigned))
            return built

        self._consumer = await started(consumer, "flow consumer", self._stopping)
        self._task = asyncio.create_task(self._loop(), name="flow-lane")

    async def stop(self) -> None:
        """Stop reading, let calls in flight finish within the grace period, commit, leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await self._task
            except (asyncio.CancelledError, Stopping):
                pass
        if self._timer is not None:
            self._timer.cancel()
        tasks = [t for ts in self._tasks.values() for t in ts]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self._settings.executor_shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        await self._commit()
        if self._consumer is not None:
            await self._consumer.stop()

    # -- reading --------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._consumer is not None  # noqa: S101 - set in start()
        loop = asyncio.get_running_loop()
        next_commit = loop.time() + _COMMIT_EVERY_S
        while not self._stopping.is_set():
            if self._waiting >= _MAX_WAITING:
                await asyncio.sleep(0.05)
            else:
                batch = await self._consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batch.items():
                    for record in records:
                        self._take(tp, record)
                if batch:
                    self._pump()
            if loop.time() >= next_commit:
                await self._commit()
                next_commit = loop.time() + _COMMIT_EVERY_S

    def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        raw = record.value or b""
        try:
            event = decode_event(raw)
        except EventDecodeError:
            event = None
        if isinstance(event, RunCancelled):
            run_id = event.data.run_id
            self._drop(record.key, lambda w: w.due.run_id == run_id, None)
            return
        if isinstance(event, ScheduleStopped):
            stopped = event.data
            for one in stopped.schedules:
                self._stops.stop(one.schedule_id, one.schedule_version, stopped.status)
            self._drop(record.key, lambda w: self._stops.withdrawn(w.due) is not None, self._stops)
            return
        if not isinstance(event, RunDue):
            self._set_aside(tp, record.offset, raw, record.key)
            return
        due = event.data
        self._offsets.tracker(tp).started(record.offset)
        status = self._stops.withdrawn(due) if self._stops else None
        if status is not None:
            self._withdrawn(_Waiting(tp, record.offset, due), status)
            return
        flow = (due.tenant_id, due.delivery.flow)
        now = asyncio.get_running_loop().time()
        limit = self._limit(flow)
        gate = self._gates.get(flow)
        if gate is None:
            gate = self._gates[flow] = FlowGate()
            self._gate_tp[flow] = tp
            assigned_at = self._assigned_at.get(tp)
            if assigned_at is not None:
                gate.seed(limit, assigned_at)
        held_by = gate.blocked(limit, now) or ("concurrency" if gate.waiting else None)
        if held_by is not None:
            self._throttled.labels(held_by).inc()
        gate.push(due.nominal_time.timestamp(), due.attempt, _Waiting(tp, record.offset, due))
        self._waiting += 1
        self._waiting_gauge.inc()

    def _drop(self, key: bytes | None, withdrawn: Callable[[_Waiting], bool], stops: StoppedSchedules | None) -> None:
        """Take the waiting runs a cancel or a stop reached out of their flow's queue; a stop also closes them in the
        history (a cancel's own record on ``chime.runs.due`` already does)."""
        try:
            tenant, flow_key = json.loads(key or b"")
            gate = self._gates.get((str(tenant), str(flow_key)))
        except (ValueError, TypeError):
            gate = None
        if gate is None:
            return
        for item in gate.remove(withdrawn):
            self._waiting -= 1
            self._waiting_gauge.dec()
            status = stops.withdrawn(item.due) if stops is not None else None
            if status is None:
                self._finished(item)
            else:
                self._withdrawn(item, status)

    def _withdrawn(self, item: _Waiting, status: str) -> None:
        def _done(published: asyncio.Future[list[BaseException | None]]) -> None:
            if all(r is None for r in published.result()):
                self._finished(item)

        self._withdraw(str(item.due.schedule_id).encode(), item.due, status).add_done_callback(_done)

    def _finished(self, item: _Waiting) -> None:
        tracker = self._offsets.trackers.get(item.tp)
        if tracker is not None:
            tracker.finished(item.offset)

    def _limit(self, flow: FlowId) -> FlowLimit:
        # A limit deleted while its runs wait leaves them to the default.
        return self._limits.get(*flow) or self._default

    # -- starting calls -------------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start every flow's head runs that its limits allow; wake again when a rate window next opens."""
        self._pump_soon = False
        loop = asyncio.get_running_loop()
        now = loop.time()
        wake: float | None = None
        for flow, gate in list(self._gates.items()):
            limit = self._limit(flow)
            while gate.waiting:
                held_by = gate.blocked(limit, now)
                if held_by == "rate":
                    wait = gate.rate_wait(limit, now)
                    wake = wait if wake is None else min(wake, wait)
                if held_by is not None:
                    break
                item, began = gate.take(limit, now)
                self._start(gate, item, began)
            if gate.idle(limit, now):
                del self._gates[flow]
                del self._gate_tp[flow]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._stops.prune()
        if wake is not None:
            self._timer = loop.call_later(wake, self._pump)

    def _start(self, gate: FlowGate[_Waiting], item: _Waiting, began: list[float]) -> None:
        self._waiting -= 1
        self._waiting_gauge.dec()

        def _finished() -> None:
            # The flow's slot is the call's: it passes on when the call ends, not once its outcome is in Kafka.
            gate.finished()
            if not self._pump_soon:
                self._pump_soon = True
                asyncio.get_running_loop().call_soon(self._pump)

        _called = release_once(_finished)
        task = asyncio.create_task(self._call(item.due, began, _called))
        tasks = self._tasks[item.tp]
        tasks.add(task)
        tracker = self._offsets.trackers.get(item.tp)

        def _done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            _called()
            if t.cancelled() or isinstance(t.exception(), PublisherStopped):
                return  # the outcome never reached Kafka: the record stays uncommitted for a redelivery
            if tracker is not None:
                tracker.finished(item.offset)

        task.add_done_callback(_done)

    async def _call(self, due: RunDueData, began: list[float], called: Callable[[], None]) -> None:
        # The rate window counts from here, not from when the task was made: a busy loop may start a group of
        # calls tens of milliseconds late, and the receiver counts when they arrive.
        began[0] = asyncio.get_running_loop().time()
        await self._deliver(str(due.schedule_id).encode(), due, called)

    # -- offsets and rebalancing ----------------------------------------------------------------------------

    async def _commit(self) -> None:
        if self._consumer is not None:
            await self._offsets.commit(self._consumer)

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        now = asyncio.get_running_loop().time()
        for tp in assigned:
            self._assigned_at[tp] = now
        taken = set(assigned)
        for flow, tp in self._gate_tp.items():
            if tp in taken:
                self._gates[flow].seed(self._limit(flow), now)
        if assigned:
            log.info("flow partitions assigned: %s", sorted(tp.partition for tp in assigned))

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            log.info("flow partitions revoked: %s", sorted(tp.partition for tp in revoked))
        gone = set(revoked)
        # Waiting runs go back to Kafka (uncommitted) for the next owner; calls in flight finish first, so the
        # next owner's count starts from a flow with nothing in flight.
        for flow, tp in list(self._gate_tp.items()):
            if tp in gone:
                gate = self._gates[flow]
                self._waiting -= len(gate.waiting)
                self._waiting_gauge.dec(len(gate.waiting))
                gate.waiting.clear()
        tasks = [t for tp in revoked for t in self._tasks.get(tp, ())]
        if tasks:
            await asyncio.wait(tasks, timeout=_REVOKE_WAIT_S)
        await self._commit()
        for tp in revoked:
            self._tasks.pop(tp, None)
        self._offsets.forget(revoked)
        # Gates stay until idle: their rate window still counts if the partition comes back to this executor.
