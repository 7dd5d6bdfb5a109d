"""The executor's consume loop: hold each run until its planned time, call it, publish the outcome.

Offsets are committed per partition only below the lowest unfinished record, so a crash re-delivers
(under the same ``webhook-id``) rather than loses. Concurrency is bounded globally and per tenant, so one
tenant's slow endpoint cannot take every slot.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import BaseModel

from services.executor.delivery import CallResult, PreparedCall, build_client, call, prepare
from services.executor.flow_lane import FlowLane
from services.executor.flows import FlowLimits, LocalFlows, RoutedRuns, release_once
from services.executor.keys import KeyStore
from services.executor.offsets import PartitionOffsets, Rebalance
from services.executor.outcome_records import succeeded_record
from services.executor.stops import STOP_MEMORY_S, StoppedSchedules
from shared.backoff import Dead, Retry, decide, tier_for
from shared.consumer_runtime import Backoff, ConsumerProgress, QuarantineTopic, Stopping, is_transient, started
from shared.errors import EventDecodeError
from shared.eventloop import LoopBinding
from shared.events import (
    CONTENT_TYPE,
    DlqEntry,
    Envelope,
    RunAttemptFailed,
    RunCancelled,
    RunDeadLettered,
    RunDue,
    RunFinishedCommand,
    decode_event,
    encode_event,
)
from shared.events.flow import flow_record_key
from shared.events.probe import probe_run
from shared.events.runs import (
    DlqEntryData,
    RunCancelledData,
    RunDueData,
    RunFinishedData,
    RunOutcomeData,
    RunStatus,
)
from shared.fetch_pacing import FetchPace, pace_fetches
from shared.httpclient import HttpClient
from shared.kafka import (
    AHEAD_FETCH,
    BATCH_LINGER_MS,
    OUTCOME_ROUND_MS,
    build_group_consumer,
    build_producer,
    group_id,
)
from shared.logs import run_context
from shared.publisher import BatchPublisher, PublisherStopped
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import (
    PLANNER_COMMANDS,
    RETRY_TIERS,
    RUNS_DLQ,
    RUNS_DUE,
    RUNS_FLOW,
    RUNS_RESULTS,
    TopicSpec,
    topic_name,
)

log = logging.getLogger(__name__)

_COMMIT_EVERY_S = 0.2
_CONTENT_TYPE = CONTENT_TYPE.encode()
_MAX_PENDING = 20_000
_KEY_WAIT_S = 5.0
_YIELD_EVERY = 10
# A retry due within this window is held in memory; a later one pauses its partition until then.
_RETRY_HOLD_S = 1.0
# A held run is parsed this long (up to half less) before its time: the look-ahead holds bytes, the last moment
# holds ready runs. Every run parsed ahead is a dozen live objects that each young collection scans: at 1.5 s, at
# 1,000 fires/s, those scans took 20-40 ms once per interval and made the lag's tail (per-second p99 25-45 ms); at
# 0.4 s the worst second read 27 ms and p99 4.8 ms. A burst of 10,000 due at once is no later for it (its parsing,
# about 0.5 s, overlaps its first calls: last call 1.21 s after the instant, 1.18-1.27 s with 1.5 s).
_PREPARE_LEAD_S = 0.4


class ExecutorMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.attempts = Counter(
            "chime_executor_attempts_total",
            "Webhook attempts by outcome (succeeded, retrying, dead_lettered) and HTTP status class (none: no answer)",
            ["outcome", "status_class"],
            registry=r,
        )
        # The common outcome's child, looked up once rather than on every call.
        self.succeeded = self.attempts.labels("succeeded", "2xx")
        self.retries = Counter(
            "chime_executor_retries_total", "Attempts scheduled again, by retry tier", ["tier"], registry=r
        )
        self.dead_letters = Counter(
            "chime_executor_dead_letters_total",
            "Runs dead-lettered, by cause (attempts_exhausted, too_old, permanent)",
            ["cause"],
            registry=r,
        )
        self.lag = Histogram(
            "chime_executor_call_lag_seconds",
            "Call start minus planned time",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=r,
        )
        self.duration = Histogram(
            "chime_executor_call_duration_seconds",
            "Webhook call duration",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.received_late = Histogram(
            "chime_executor_received_late_seconds",
            "How long after its planned time a run.due reached the executor (0 when it came ahead, as it should)",
            buckets=(0, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=r,
        )
        self.in_flight = Gauge("chime_executor_in_flight", "Runs held or being called", registry=r)
        self.cancelled = Counter("chime_executor_cancelled_total", "Held runs cancelled", registry=r)
        self.flow_throttled = Counter(
            "chime_flow_throttled_total",
            "Runs that waited for their flow's limit, by the limit that held them (concurrency, rate)",
            ["limit"],
            registry=r,
        )
        self.flow_waiting = Gauge(
            "chime_flow_waiting", "Runs of flows with a limit waiting in this executor for their turn", registry=r
        )
        self.flow_routed = Counter(
            "chime_flow_routed_total",
            "Runs passed to chime.runs.flow because their flow has a limit of its own",
            registry=r,
        )
        self.repeats_dropped = Counter(
            "chime_executor_repeats_dropped_total",
            "Runs announced again while the first announcement was held",
            registry=r,
        )


def _status_class(status: int | None) -> str:
    return "none" if status is None else f"{status // 100}xx"


@dataclass(slots=True)
class _Held:
    attempt: int
    tp: TopicPartition
    offset: int
    handle: asyncio.Handle


class Executor:
    def __init__(self, settings: Settings, worker_id: str) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.metrics = ExecutorMetrics()
        self.registry = self.metrics.registry
        self._quarantine = QuarantineTopic(settings, "executor", self.registry)
        stall = settings.consumer_stall_seconds
        self._progress = ConsumerProgress(group_id(settings, "executor"), stall, self.registry)
        self.keys = KeyStore(settings, self._quarantine)
        self.flow_limits = FlowLimits(settings, self._quarantine)
        self._local_flows = LocalFlows(settings.default_flow_concurrency, self.metrics.flow_throttled)
        self._flow_lane: FlowLane | None = None
        self._flow_topic = topic_name(settings, RUNS_FLOW)
        self._routed = RoutedRuns(STOP_MEMORY_S)
        self._due_topic = topic_name(settings, RUNS_DUE)
        self._results_topic = topic_name(settings, RUNS_RESULTS)
        self._dlq_topic = topic_name(settings, RUNS_DLQ)
        self._planner_topic = topic_name(settings, PLANNER_COMMANDS)
        self._retry_topics = {tier: topic_name(settings, TopicSpec(f"runs.retry.{tier}")) for tier, _ in RETRY_TIERS}
        self._retry_topic_names = set(self._retry_topics.values())
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._publisher: BatchPublisher | None = None
        self._outcomes: BatchPublisher | None = None
        self._client: HttpClient | None = None
        self._offsets = PartitionOffsets("executor")
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = defaultdict(set)
        # Runs waiting for their planned time, by run id: a cancel finds them here.
        self._held: dict[uuid.UUID, _Held] = {}
        self._stopped = StoppedSchedules()
        # Runs that were already due when their batch was read start after the whole batch is dispatched, so a
        # cancel behind them in the same batch (a delete while this executor catches up) still wins.
        self._overdue: set[uuid.UUID] = set()
        self._deferred: list[tuple[TopicPartition, int, bytes, RunDueData, PreparedCall | None]] = []
        self._global = asyncio.Semaphore(settings.executor_concurrency)
        self._tenant_limit = max(1, int(settings.executor_concurrency * settings.executor_tenant_share))
        self._tenants: dict[str, asyncio.Semaphore] = {}
        self._stopping = asyncio.Event()
        self.consuming = False
        # Counts revocations: a batch read before the latest one is stale (``_dispatch_batch``).
        self._revocations = 0
        # The loop this executor runs on, looked up once (``LoopBinding``): the hot paths below use it per run.
        self._event_loop = LoopBinding()

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._start_clients()
        except Stopping:
            await self._shutdown()
            return
        except BaseException:
            await self._shutdown()
            raise
        self.consuming = True
        try:
            await self._loop()
        finally:
            self.consuming = False
            await self._drain()
            await self._shutdown()

    async def _start_clients(self) -> None:
        """Start the clients, waiting (with backoff) for a broker that is not there yet."""
        s = self.settings
        self._client = build_client(allow_private=s.allow_private_targets, concurrency=s.executor_concurrency)
        self._producer = await started(lambda: build_producer(s), "producer", self._stopping)
        # Nothing the executor publishes is on the webhook's clock: one produce request per round instead of one
        # per handful of records, which was a third of the executor's CPU at 700 calls/s. What another component
        # waits on (routed runs, forwarded cancels, finish reports) goes in short rounds, outcomes in long ones.
        self._publisher = BatchPublisher(self._producer, BATCH_LINGER_MS / 1000)
        self._publisher.start()
        self._outcomes = BatchPublisher(self._producer, OUTCOME_ROUND_MS / 1000)
        self._outcomes.start()
        backoff = Backoff(self._stopping)
        while True:
            try:
                if not self.keys.running:
                    await self.keys.start(self._producer)
                await self.flow_limits.start(self._producer)
                break
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("waiting for Kafka (signing keys): %s: %s", type(exc).__name__, exc)
            await backoff.wait()
        for view, what in ((self.keys, "signing keys"), (self.flow_limits, "flow limits")):
            try:
                await asyncio.wait_for(view.caught_up.wait(), timeout=30)
            except TimeoutError:
                log.warning("%s not caught up after 30 s; continuing", what)

        def consumer() -> AIOKafkaConsumer:
            built = build_group_consumer(
                s,
                "executor",
                self.worker_id,
                rebalance_timeout_ms=max(10_000, s.consumer_session_timeout_ms),
                max_poll_records=500,
                **AHEAD_FETCH,
            )
            built.subscribe(
                [self._due_topic, *self._retry_topic_names], listener=Rebalance(self.on_revoked, self.on_assigned)
            )
            return built

        self._consumer = await started(consumer, "consumer", self._stopping)
        pace_fetches(self._consumer, FetchPace(AHEAD_FETCH["fetch_max_wait_ms"], AHEAD_FETCH["fetch_min_bytes"]))
        self._flow_lane = FlowLane(
            s,
            self.worker_id,
            self.flow_limits,
            self._deliver_in_lane,
            self._set_aside,
            self.withdrawal,
            self.metrics.flow_throttled,
            self.metrics.flow_waiting,
        )
        await self._flow_lane.start()

    def stop(self) -> None:
        self._stopping.set()

    async def health(self) -> tuple[bool, dict[str, object]]:
        if not self.consuming or self._consumer is None:
            return False, {"consuming": False}
        # Runs held for their time keep the committed offset behind by the look-ahead; a commit at least every
        # CHIME_CONSUMER_STALL_SECONDS while there is lag is progress.
        progressing, lag = self._progress.check(self._consumer)
        keys = self.keys.running
        flows = self.flow_limits.running and self._flow_lane is not None and self._flow_lane.running
        detail: dict[str, object] = {
            "consuming": True,
            "lag": lag,
            "progressing": progressing,
            "signing_keys": keys,
            "flows": flows,
        }
        return progressing and keys and flows, detail

    async def _shutdown(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        await self.keys.stop()
        await self.flow_limits.stop()
        for publisher in (self._publisher, self._outcomes):
            if publisher is not None:
                await publisher.stop()
        if self._producer is not None:
            await self._producer.stop()
        if self._client is not None:
            await self._client.close()

    async def _drain(self) -> None:
        """Stop taking work, let in-flight calls finish within the grace period, then commit.

        Runs still held for their time are left uncommitted: the partition's next owner calls them.
        """
        for held in self._held.values():
            held.handle.cancel()
        self._held.clear()
        tasks = [t for ts in self._tasks.values() for t in ts]
        lane = self._flow_lane.stop() if self._flow_lane is not None else asyncio.sleep(0)
        if tasks:
            log.info("draining %d in-flight runs", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.settings.executor_shutdown_grace_seconds)
            for task in pending:
                task.cancel()
        await lane
        await self._commit()

    # -- consuming ------------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._consumer is not None  # noqa: S101 - set in run()
        loop = self._event_loop()
        next_commit = loop.time() + _COMMIT_EVERY_S
        while not self._stopping.is_set():
            if self._offsets.pending() >= _MAX_PENDING:
                await asyncio.sleep(0.01)
            else:
                batch = await self._consumer.getmany(timeout_ms=50, max_records=500)
                try:
                    await self._dispatch_batch(batch)
                finally:
                    self._start_overdue()
            if loop.time() >= next_commit:
                await self._commit()
                self._stopped.prune()
                self._routed.prune()
                next_commit = loop.time() + _COMMIT_EVERY_S

    async def _dispatch_batch(self, batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Dispatch a fetched batch in slices, up to a revocation.

        The group coordinator runs between the slices, and a rebalance revokes every partition. What is left of the
        batch then is stale: a partition that came back is read again from its committed offset, one that went
        elsewhere is its new owner's. Dispatched anyway, its runs would be called twice, and its offsets tracked
        past records this executor has not read again yet (a commit there could skip them).
        """
        read_in = self._revocations
        for tp, records in batch.items():
            for n, record in enumerate(records, 1):
                if not self._dispatch(tp, record):
                    break
                if n % _YIELD_EVERY == 0:
                    # Decoding is CPU work: let due timers fire between slices of a large batch.
                    await asyncio.sleep(0)
                    if self._revocations != read_in:
                        return

    def _dispatch(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> bool:
        """Start handling ``record``; False when its partition must wait (a retry not due yet)."""
        raw = record.value or b""
        try:
            probe = probe_run(raw)
        except EventDecodeError:
            self._set_aside(tp, record.offset, raw, record.key)
            return True
        if probe.is_cancel:
            self._cancel(probe.run_id)
            flow = self._routed.flow_of_run(probe.run_id) if self._routed else None
            if flow is not None:
                self._forward(tp, record, [flow])
            return True
        if probe.is_stop:
            flows: set[bytes] = set()
            for stop in probe.stops:
                self._stopped.stop(*stop)
                if self._routed:
                    flows |= self._routed.flows_of_schedule(stop[0])
            if flows:
                self._forward(tp, record, sorted(flows))
            return True
        head = probe.data
        run_id = probe.run_id
        planned = head.planned_time
        if not probe.is_due or planned is None:
            return True
        if tp.topic in self._retry_topic_names and not self._due_soon(tp, record.offset, head.not_before):
            return False
        held = self._held.get(run_id)
        if held is not None and held.attempt == head.attempt:
            # The same run announced twice (a planner re-fired it after a crash): one call is enough.
            self.metrics.repeats_dropped.inc()
            return True
        now = utcnow()
        self.metrics.received_late.observe(max(0.0, (now - planned).total_seconds()))
        self._offsets.tracker(tp).started(record.offset)
        self.metrics.in_flight.inc()
        due_at = max(planned, head.not_before) if head.not_before else planned
        delay = (due_at - now).total_seconds()
        key = record.key or b""
        if delay <= 0:
            # Due now, started once this batch is dispatched (``_start_overdue``): held until then, so a cancel (or a
            # repeat of the same announcement) further on in the batch still finds it.
            release = self._prepare(tp, record.offset, key, raw, run_id, due_at)
            if release is not None:
                self._held[run_id] = _Held(head.attempt, tp, record.offset, release)
                self._overdue.add(run_id)
            return True
        # A timer, not a task, holds the run until its time, and it holds the record's bytes, not the parsed event:
        # thousands of held runs cost a heap entry each and add nothing for the garbage collector to walk. Shortly
        # before its time the run is parsed (``_prepare``), so a burst of runs due at one instant finds that work
        # done; the moment is spread over a window, so a burst's parsing interleaves with the loop's other work.
        loop = self._event_loop()
        lead = _PREPARE_LEAD_S * (0.5 + 0.5 * random.random())  # noqa: S311 - spreading work, not security
        handle: asyncio.Handle
        if delay > lead:
            handle = loop.call_later(delay - lead, self._prepare, tp, record.offset, key, raw, run_id, due_at)
        else:
            handle = loop.call_soon(self._prepare, tp, record.offset, key, raw, run_id, due_at)
        self._held[run_id] = _Held(head.attempt, tp, record.offset, handle)
        return True

    def _prepare(
        self, tp: TopicPartition, offset: int, key: bytes, raw: bytes, run_id: uuid.UUID, due_at: datetime
    ) -> asyncio.TimerHandle | None:
        """Parse a held run and set the timer that starts it; the timer, or None when the record was set aside."""
        try:
            event = decode_event(raw)
        except EventDecodeError:
            event = None
        held = self._held.get(run_id)
        # A later announcement of the same run (another attempt) may have taken the slot; this one still runs.
        if held is not None and (held.offset != offset or held.tp != tp):
            held = None
        if not isinstance(event, RunDue):
            if held is not None:
                del self._held[run_id]
            self._set_aside(tp, offset, raw, key)
            self._finish(tp, offset)
            return None
        now = utcnow()
        delay = max(0.0, (due_at - now).total_seconds())
        ready = self._prepared(event.data, max(due_at, now))
        handle = self._event_loop().call_later(delay, self._release, tp, offset, key, event.data, ready)
        if held is not None:
            held.handle = handle
        return handle

    def _set_aside(self, tp: TopicPartition, offset: int, raw: bytes, key: bytes | None = None) -> None:
        """An undecodable record goes to ``chime.quarantine`` (sent with the next round of outcomes) and is passed."""
        headers = self._quarantine.headers(None, tp.topic, tp.partition, offset, "undecodable: not a run event")
        if self._publisher is not None:
            self._publisher.publish(self._quarantine.topic, raw, key, headers)

    def _prepared(self, due: RunDueData, at: datetime) -> PreparedCall | None:
        """The request built and signed now for the call at ``at``, when nothing stands between the run and its call
        that could hold it back (a flow limit of its own); without one, the call builds its request when it is made.
        A prepared call whose signature has gone stale by then is signed again (``PreparedCall``)."""
        limited = self.flow_limits and self.flow_limits.get(due.tenant_id, due.delivery.flow) is not None
        if self._client is None or limited:
            return None
        return prepare(self._client, due, self.keys.secrets_for(due.tenant_id, at), int(at.timestamp()))

    def _release(
        self, tp: TopicPartition, offset: int, key: bytes, due: RunDueData, prepared: PreparedCall | None = None
    ) -> None:
        if due.run_id in self._overdue:
            self._deferred.append((tp, offset, key, due, prepared))
            return
        held = self._held.get(due.run_id)
        if held is not None and held.offset == offset and held.tp == tp:
            del self._held[due.run_id]
        if self._stopped:
            status = self._stopped.withdrawn(due)
            if status is not None:
                self._withdraw(tp, offset, key, due, status)
                return
        self._start(tp, offset, key, due, prepared)

    def _withdraw(self, tp: TopicPartition, offset: int, key: bytes, due: RunDueData, status: str) -> None:
        def _done(published: asyncio.Future[list[BaseException | None]]) -> None:
            # Committed past only once the records are in Kafka; a failed publish leaves the run to a redelivery.
            if all(r is None for r in published.result()):
                self._finish(tp, offset)

        self.withdrawal(key, due, status).add_done_callback(_done)

    def withdrawal(self, key: bytes, due: RunDueData, status: str) -> asyncio.Future[list[BaseException | None]]:
        """A planned run of a schedule paused or deleted since it was announced: say so instead of calling.

        The ``run.cancelled`` closes the run in the history (the planner may have applied the change after the run's
        time, and then cancels nothing); the planner is told a run it holds the schedule back for has ended.
        """
        assert self._publisher is not None  # noqa: S101 - set in run()
        self.metrics.cancelled.inc()
        data = RunCancelledData(
            run_id=due.run_id,
            schedule_id=due.schedule_id,
            tenant_id=due.tenant_id,
            nominal_time=due.nominal_time,
            reason=f"schedule {status}",
        )
        event = RunCancelled(subject=str(due.schedule_id), tenant=due.tenant_id, time=utcnow(), data=data)
        headers = [("tenant", due.tenant_id.encode()), ("content-type", CONTENT_TYPE.encode())]
        published = [self._publisher.publish(self._due_topic, encode_event(event), key, headers)]
        if due.report_finish:
            finished = RunFinishedData(
                run_id=due.run_id, schedule_id=due.schedule_id, tenant_id=due.tenant_id, status=RunStatus.SKIPPED
            )
            command = RunFinishedCommand(
                subject=str(due.schedule_id), tenant=due.tenant_id, time=utcnow(), data=finished
            )
            published.append(self._publisher.publish(self._planner_topic, encode_event(command), key, headers))
        # Each entry None when its record is in Kafka, else the exception.
        return asyncio.gather(*published, return_exceptions=True)

    def _start_overdue(self) -> None:
        """Start the overdue runs of the batch just dispatched that nothing in it cancelled."""
        self._overdue.clear()
        deferred, self._deferred = self._deferred, []
        for tp, offset, key, due, prepared in deferred:
            held = self._held.get(due.run_id)
            if held is not None and held.offset == offset and held.tp == tp:
                self._release(tp, offset, key, due, prepared)

    def _cancel(self, run_id: uuid.UUID) -> None:
        """A run announced ahead of its time was withdrawn (pause, delete or edit): never call it."""
        held = self._held.pop(run_id, None)
        if held is None:
            return  # already called, or never seen by this executor
        held.handle.cancel()
        self.metrics.cancelled.inc()
        self._finish(held.tp, held.offset)

    def _finish(self, tp: TopicPartition, offset: int) -> None:
        """A held run that ends without a call (cancelled, or unreadable): its offset may be committed past."""
        self.metrics.in_flight.dec()
        tracker = self._offsets.trackers.get(tp)
        if tracker is not None:
            tracker.finished(offset)

    def _start(
        self, tp: TopicPartition, offset: int, key: bytes, due: RunDueData, prepared: PreparedCall | None = None
    ) -> None:
        if self.flow_limits and self.flow_limits.get(due.tenant_id, due.delivery.flow) is not None:
            self._route(tp, offset, key, due)
            return
        task = self._event_loop().create_task(self._deliver_gated(key, due, prepared))
        self._tasks[tp].add(task)
        tracker = self._offsets.trackers.get(tp)

        def _done(t: asyncio.Task[None]) -> None:
            self._tasks[tp].discard(t)
            self.metrics.in_flight.dec()
            if t.cancelled():
                return
            exc = t.exception()
            if isinstance(exc, PublisherStopped):
                # The outcome never reached Kafka: the offset stays uncommitted and the next owner calls it again.
                return
            if tracker is not None:
                tracker.finished(offset)
            if exc is not None:
                context = run_context(due.tenant_id, due.schedule_id, due.run_id, due.attempt)
                log.error("run handler failed", exc_info=exc, extra=context)

        task.add_done_callback(_done)

    def _route(self, tp: TopicPartition, offset: int, key: bytes, due: RunDueData) -> None:
        """A run of a flow with a limit of its own goes to the flow's owner (``FlowLane``), due now as it is."""
        assert self._publisher is not None  # noqa: S101 - set in run()
        self.metrics.flow_routed.inc()
        event = RunDue(subject=str(due.schedule_id), tenant=due.tenant_id, time=utcnow(), data=due)
        headers = [("tenant", due.tenant_id.encode()), ("content-type", CONTENT_TYPE.encode())]
        flow_key = flow_record_key(due.tenant_id, due.delivery.flow)
        self._routed.add(due.run_id, due.schedule_id, flow_key)
        published = self._publisher.publish(self._flow_topic, encode_event(event), flow_key, headers)

        def _done(f: asyncio.Future[None]) -> None:
            # Committed past once the run is in Kafka; a failed publish leaves it to a redelivery.
            if not f.cancelled() and f.exception() is None:
                self._finish(tp, offset)

        published.add_done_callback(_done)

    def _forward(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes], flows: list[bytes]) -> None:
        """A cancel or stop that reached this executor after it passed the runs concerned to ``chime.runs.flow``
        follows them there, behind them in their flow's partition, so a run still waiting its turn is not called."""
        assert self._publisher is not None  # noqa: S101 - set in run()
        tracker = self._offsets.tracker(tp)
        tracker.started(record.offset)
        headers = list(record.headers)
        raw = record.value or b""
        published = [self._publisher.publish(self._flow_topic, raw, flow, headers) for flow in flows]

        def _done(results: asyncio.Future[list[BaseException | None]]) -> None:
            if all(r is None for r in results.result()):
                tracker.finished(record.offset)

        asyncio.gather(*published, return_exceptions=True).add_done_callback(_done)

    async def _deliver_gated(self, key: bytes, due: RunDueData, prepared: PreparedCall | None) -> None:
        """Deliver within the default flow limit of this executor: the slot is the call's, and passes on when the
        call ends, not when its outcome is in Kafka (a round later)."""
        flow = (due.tenant_id, due.delivery.flow)
        await self._local_flows.acquire(flow)
        release = release_once(lambda: self._local_flows.release(flow))
        try:
            await self._deliver(key, due, prepared, release)
        finally:
            release()

    async def _deliver_in_lane(self, key: bytes, due: RunDueData, on_called: Callable[[], None]) -> None:
        """Deliver a run of a flow with a limit of its own (``FlowLane``, which holds the limit)."""
        await self._deliver(key, due, None, on_called)

    def _due_soon(self, tp: TopicPartition, offset: int, not_before: datetime | None) -> bool:
        """A retry tier holds a record until its not_before by pausing the partition, not by holding memory."""
        assert self._consumer is not None  # noqa: S101 - set in run()
        if not_before is None:
            return True
        wait = (not_before - utcnow()).total_seconds()
        if wait <= _RETRY_HOLD_S:
            return True
        self._consumer.seek(tp, offset)
        self._consumer.pause(tp)
        self._event_loop().call_later(wait - _RETRY_HOLD_S, self._resume, tp)
        return False

    def _resume(self, tp: TopicPartition) -> None:
        if self._consumer is not None and tp in self._consumer.assignment():
            self._consumer.resume(tp)

    async def _deliver(
        self,
        key: bytes,
        due: RunDueData,
        prepared: PreparedCall | None = None,
        on_called: Callable[[], None] | None = None,
    ) -> None:
        """Make the call (or find it too old to make), then publish what came of it. ``on_called`` runs as soon as
        the call has ended, before the outcome is published: a flow's slot is for calls, not for publishing."""
        tenant_slots = self._tenants.get(due.tenant_id)
        if tenant_slots is None:
            tenant_slots = self._tenants[due.tenant_id] = asyncio.Semaphore(self._tenant_limit)
        async with tenant_slots, self._global:
            # One clock reading per moment of the attempt (start, end): each is a new datetime, several per run.
            started = utcnow()
            age = started - due.age_origin
            age_expired = age > timedelta(seconds=due.retry_policy.max_event_age_seconds)
            if age_expired:
                result = CallResult(False, None, f"expired: {age.total_seconds():.0f}s past its time", None, 0)
                permanent_reason: str | None = "max_event_age_seconds exceeded before the attempt"
            else:
                assert self._client is not None  # noqa: S101 - set in run()
                secrets = self.keys.secrets_for(due.tenant_id, started)
                if not secrets:
                    secrets = await self.keys.wait_for(due.tenant_id, _KEY_WAIT_S)
                self.metrics.lag.observe(max(0.0, (started - due.planned_time).total_seconds()))
                if not secrets:
                    result = CallResult(False, None, "no signing key for tenant", None, 0, retryable=True)
                else:
                    result = await call(self._client, due, secrets, prepared)
                permanent_reason = None if result.retryable else f"permanent failure: {result.error}"
                self.metrics.duration.observe(result.duration_ms / 1000)
        if on_called is not None:
            on_called()
        finished = utcnow()
        if result.ok:
            # The planner hears of the end in its own round, not after the outcome's longer one.
            finish = self._report_finish(key, due, RunStatus.SUCCEEDED)
            record = succeeded_record(
                due,
                worker=self.worker_id,
                started_at=started,
                finished_at=finished,
                duration_ms=result.duration_ms,
                http_status=result.http_status,
                response_excerpt=result.response_excerpt,
            )
            await self._publish_record(self._results_topic, key, due, record)
            if finish is not None:
                await finish
            self.metrics.succeeded.inc()
            return
        outcome = RunOutcomeData(
            run_id=due.run_id,
            schedule_id=due.schedule_id,
            tenant_id=due.tenant_id,
            nominal_time=due.nominal_time,
            trigger=due.trigger,
            attempt=due.attempt,
            status=RunStatus.SUCCEEDED,
            worker=self.worker_id,
            started_at=started,
            finished_at=finished,
            duration_ms=result.duration_ms,
            http_status=result.http_status,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        decision: Retry | Dead = (
            Dead(permanent_reason, "too_old" if age_expired else "permanent")
            if permanent_reason is not None
            else decide(
                due.retry_policy,
                run_id=due.run_id,
                failed_attempt=due.attempt,
                attempts_used=due.attempts_used,
                failed_at=finished,
                age_origin=due.age_origin,
                retry_after_seconds=result.retry_after_seconds,
            )
        )
        history = [*due.history, outcome.record()]
        if isinstance(decision, Retry):
            outcome = outcome.model_copy(update={"status": RunStatus.RETRYING, "next_attempt_at": decision.not_before})
            retry = due.model_copy(
                update={"attempt": due.attempt + 1, "not_before": decision.not_before, "history": history}
            )
            tier = tier_for(decision.delay_seconds, RETRY_TIERS)
            topic = self._retry_topics[tier]
            # The next attempt is safely in Kafka before the outcome is reported and the offset may move.
            await self._publish(topic, key, RunDue, due, retry, finished)
            await self._publish(self._results_topic, key, RunAttemptFailed, due, outcome, finished)
            self.metrics.attempts.labels("retrying", _status_class(result.http_status)).inc()
            self.metrics.retries.labels(tier).inc()
            return
        outcome = outcome.model_copy(update={"status": RunStatus.DEAD_LETTERED, "reason": decision.reason})
        entry = DlqEntryData(run=due, attempts=history, reason=decision.reason, dead_at=finished)
        finish = self._report_finish(key, due, RunStatus.DEAD_LETTERED)
        await self._publish(self._dlq_topic, key, DlqEntry, due, entry, finished)
        await self._publish(self._results_topic, key, RunDeadLettered, due, outcome, finished)
        if finish is not None:
            await finish
        self.metrics.attempts.labels("dead_lettered", _status_class(result.http_status)).inc()
        self.metrics.dead_letters.labels(decision.cause).inc()
        context = run_context(due.tenant_id, due.schedule_id, due.run_id, due.attempt)
        log.warning("run dead-lettered: %s", decision.reason, extra={**context, "http_status": result.http_status})

    def _report_finish(self, key: bytes, due: RunDueData, status: RunStatus) -> asyncio.Future[None] | None:
        """Tell the planner a run that holds its schedule back (overlap skip or buffer_one) has ended; the future
        resolves once the broker has the report (None: nothing to report)."""
        if not due.report_finish:
            return None
        data = RunFinishedData(run_id=due.run_id, schedule_id=due.schedule_id, tenant_id=due.tenant_id, status=status)
        return self._publish(self._planner_topic, key, RunFinishedCommand, due, data)

    def _publish(
        self,
        topic: str,
        key: bytes,
        kind: type[Envelope],
        due: RunDueData,
        data: BaseModel,
        at: datetime | None = None,
    ) -> asyncio.Future[None]:
        """Publish a run's event (its ``time`` is ``at``, else now): outcomes, retries and dead letters in the
        outcome rounds, a finish report in the short ones. The future resolves on the broker's acknowledgement."""
        assert self._publisher is not None and self._outcomes is not None  # noqa: S101 - set in run()
        # The subclasses default ``type`` and declare ``data``; the base class knows neither.
        when = at if at is not None else utcnow()
        event = kind(subject=str(due.schedule_id), tenant=due.tenant_id, time=when, data=data)  # type: ignore[call-arg]
        return self._publish_record(topic, key, due, encode_event(event))

    def _publish_record(self, topic: str, key: bytes, due: RunDueData, value: bytes) -> asyncio.Future[None]:
        """Publish a run's encoded event, with the record headers every run event carries."""
        assert self._publisher is not None and self._outcomes is not None  # noqa: S101 - set in run()
        headers = [("tenant", due.tenant_id.encode()), ("content-type", _CONTENT_TYPE)]
        publisher = self._publisher if topic == self._planner_topic else self._outcomes
        return publisher.publish(topic, value, key, headers)

    # -- offsets and rebalancing ----------------------------------------------------------------------------

    async def _commit(self) -> None:
        if self._consumer is None:
            return
        committed = await self._offsets.commit(self._consumer)
        if committed:
            self._progress.committed(self._consumer, committed)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        self._revocations += 1
        await self._commit()
        gone = set(revoked)
        for run_id, held in list(self._held.items()):
            if held.tp in gone:
                # Held runs are left to the partition's next owner; calls already under way finish.
                held.handle.cancel()
                del self._held[run_id]
                self.metrics.in_flight.dec()
        for tp in revoked:
            self._tasks.pop(tp, None)
        self._offsets.forget(revoked)

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        # Reading starts again at the committed offset: nothing tracked for a partition before this assignment
        # (a call that was under way finishes on the tracker it started on) may hold its commits back or move them on.
        self._offsets.forget(assigned)
        for tp in assigned:
            self._offsets.tracker(tp)
