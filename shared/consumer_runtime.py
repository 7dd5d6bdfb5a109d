"""The loop a consuming service runs: start when the broker and the database are there, handle each record once,
set aside the ones that cannot be handled, commit only what was handled, and report progress.

- **Start**: Kafka clients and the database are retried with backoff (and a log line per try) until they answer,
  so a service started before its dependencies waits for them instead of exiting.
- **Errors**: a batch whose handling fails for a transient reason (the database restarting, the broker
  unreachable) is retried whole, with backoff, for as long as the reason lasts: nothing is committed, nothing
  skipped. Any other failure means a record of its own is at fault: the batch is handled again one record at a
  time, and a record that still fails after a few tries goes to ``chime.quarantine`` (the original key, value and
  headers, plus its source and the error) while the records after it are handled.
- **Progress**: readiness fails when the consumer has lag and has not committed anything for
  ``CHIME_CONSUMER_STALL_SECONDS``; it recovers by itself once records move again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from typing import Any, TypeAlias, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    NodeNotReadyError,
    RequestTimedOutError,
)
from asyncpg import exceptions as pg_errors
from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.kafka import build_group_consumer, build_producer, group_id
from shared.settings import Settings
from shared.topics import QUARANTINE, topic_name

log = logging.getLogger(__name__)

_BACKOFF_FIRST_S = 0.5
_BACKOFF_MAX_S = 10.0
# A record that fails on its own is tried this many times before it is set aside.
_RECORD_ATTEMPTS = 3
_ERROR_HEADER_LIMIT = 1000
_HOUSEKEEPING_FIRST_S = 30.0

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Handler = Callable[[Sequence[Record]], Awaitable[None]]
_Client = TypeVar("_Client", AIOKafkaConsumer, AIOKafkaProducer)


class Stopping(Exception):  # noqa: N818 - a signal, not an error
    """The service was asked to stop while it waited; nothing more is handled or committed."""


class DependencyMissing(Exception):
    """Something the service needs is not there yet (a topic not created yet, say): wait for it like an outage."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency is unavailable (worth waiting for), not that a record is bad."""
    if isinstance(exc, DependencyMissing):
        return True
    if isinstance(exc, DBAPIError):
        # Class 40 (a deadlock, a serialization failure) rolls the transaction back for timing, not for its content.
        rolled_back = str(getattr(exc.orig, "sqlstate", "") or "").startswith("40")
        return exc.connection_invalidated or rolled_back or isinstance(exc, OperationalError | InterfaceError)
    # Raised as they are where a query runs on the driver's connection: the server gone, restarting, or full, or
    # the transaction rolled back by a deadlock or serialization failure.
    pg_unavailable = (
        pg_errors.PostgresConnectionError
        | pg_errors.OperatorInterventionError
        | pg_errors.InsufficientResourcesError
        | pg_errors.InterfaceError
        | pg_errors.TransactionRollbackError
    )
    if isinstance(exc, pg_unavailable):
        return True
    kafka_unavailable = KafkaConnectionError | KafkaTimeoutError | NodeNotReadyError | RequestTimedOutError
    return isinstance(exc, OSError | TimeoutError | kafka_unavailable)


class Backoff:
    """Waits that double up to a ceiling, cut short by a stop."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self._stopping = stopping
        self._next = _BACKOFF_FIRST_S

    async def wait(self) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), self._next)
        except TimeoutError:
            self._next = min(self._next * 2, _BACKOFF_MAX_S)
            return
        raise Stopping


async def started(build: Callable[[], _Client], what: str, stopping: asyncio.Event) -> _Client:
    """A started Kafka client; while the broker cannot be reached, a fresh client is tried again with backoff."""
    backoff = Backoff(stopping)
    while True:
        client = build()
        try:
            await client.start()
            return client
        except Exception as exc:
            await client.stop()
            if not is_transient(exc):
                raise
            log.warning("waiting for Kafka (%s): %s: %s", what, type(exc).__name__, exc)
        await backoff.wait()


async def wait_for_database(engine: AsyncEngine, stopping: asyncio.Event) -> None:
    """Return once Postgres answers a query, trying again with backoff until then."""
    backoff = Backoff(stopping)
    while True:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return
        except Exception as exc:
            if not (is_transient(exc) or isinstance(exc, DBAPIError)):
                raise
            log.warning("waiting for Postgres: %s: %s", type(exc).__name__, str(exc).splitlines()[0][:300])
        await backoff.wait()


class QuarantineTopic:
    """Publishes records that cannot be handled to ``chime.quarantine``, as they were, with why and whence."""

    def __init__(self, settings: Settings, service: str, registry: CollectorRegistry) -> None:
        self.topic = topic_name(settings, QUARANTINE)
        self._service = service.encode()
        self.quarantined = Counter(
            "chime_quarantined_records_total",
            "Records set aside in chime.quarantine, by the topic they came from",
            ["topic"],
            registry=registry,
        )

    def headers(
        self, original: Sequence[tuple[str, bytes]] | None, topic: str, partition: int, offset: int, error: str
    ) -> list[tuple[str, bytes]]:
        """The original headers plus where the record came from and why it was set aside; counts it, logs it."""
        self.quarantined.labels(topic).inc()
        log.error(
            "record quarantined", extra={"topic": topic, "partition": partition, "offset": offset, "error": error}
        )
        return [
            *(original or ()),
            ("chime-quarantine-service", self._service),
            ("chime-quarantine-topic", topic.encode()),
            ("chime-quarantine-partition", str(partition).encode()),
            ("chime-quarantine-offset", str(offset).encode()),
            ("chime-quarantine-error", error[:_ERROR_HEADER_LIMIT].encode()),
        ]

    async def put(self, producer: AIOKafkaProducer, record: Record, error: str) -> None:
        headers = self.headers(record.headers, record.topic, record.partition, record.offset, error)
        await producer.send_and_wait(self.topic, record.value, key=record.key, headers=headers)


class ConsumerProgress:
    """When the consumer last moved; readiness fails once it has lag and has not moved for a while."""

    def __init__(self, group: str, stall_seconds: float, registry: CollectorRegistry) -> None:
        self._group = group
        self._stall = stall_seconds
        self.moved_at = time.monotonic()
        # The offset committed last, per partition: records fetched but not yet handled still count as lag.
        self._committed: dict[Any, int] = {}
        self._reported: set[tuple[str, str, str]] = set()
        self.lag = Gauge(
            "chime_consumer_lag",
            "Records not yet handled, by consumer group and partition (updated at each health check and scrape)",
            ["group", "topic", "partition"],
            registry=registry,
        )

    def committed(self, consumer: AIOKafkaConsumer, offsets: Mapping[Any, int] | None = None) -> None:
        """A commit went through: of ``offsets``, or (without them) of everything fetched so far."""
        if offsets is None:
            self._committed = {tp: _position(consumer, tp) for tp in consumer.assignment()}
        else:
            self._committed.update(offsets)
        self.moved_at = time.monotonic()

    def check(self, consumer: AIOKafkaConsumer) -> tuple[bool, int]:
        total = 0
        # A paused partition waits on purpose (a retry tier holding its head record until due): not lag.
        paused = consumer.paused()
        assigned = consumer.assignment()
        for tp in assigned:
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue  # no fetch has answered for this partition yet
            behind = 0 if tp in paused else max(0, highwater - self._committed.get(tp, _position(consumer, tp)))
            self.lag.labels(self._group, tp.topic, str(tp.partition)).set(behind)
            total += behind
        # Partitions this process no longer owns are another member's to report.
        owned = {(self._group, tp.topic, str(tp.partition)) for tp in assigned}
        for labels in list(self._reported):
            if labels not in owned:
                self.lag.remove(*labels)
        self._reported = owned
        if total == 0:
            self.moved_at = time.monotonic()
        stalled = total > 0 and time.monotonic() - self.moved_at > self._stall
        return not stalled, total


def _position(consumer: AIOKafkaConsumer, tp: Any) -> int:
    """The next offset this consumer will hand out (aiokafka keeps it synchronously in its subscription state)."""
    state = consumer._subscription.subscription.assignment.state_value(tp)  # noqa: SLF001 - no public sync accessor
    return int(state.position) if state is not None and state.has_valid_position else 0


class ConsumerRuntime:
    """Owns a group consumer, a producer and their lifecycle for one service; ``handler`` does the work."""

    def __init__(
        self,
        settings: Settings,
        *,
        service: str,
        group: str,
        instance: str,
        topics: Sequence[str],
        handler: Handler,
        registry: CollectorRegistry,
        engine: AsyncEngine | None = None,
        max_records: int = 500,
        commit_every_s: float = 0.0,
        **consumer_options: Any,
    ) -> None:
        self._settings = settings
        self._service = service
        self._group = group
        self._instance = instance
        self._topics = list(topics)
        self._handler = handler
        self._engine = engine
        self._max_records = max_records
        self._commit_every_s = commit_every_s
        self._consumer_options = consumer_options
        self._stopping = asyncio.Event()
        self._quarantine = QuarantineTopic(settings, service, registry)
        self._progress = ConsumerProgress(group_id(settings, group), settings.consumer_stall_seconds, registry)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.consuming = False
        # Why the last batch is waiting, while it waits (shown in readiness).
        self.waiting_on: str | None = None
        # Records of the batch under way already set aside: a batch handled again (whole, or one record at a time)
        # must not quarantine them twice.
        self._set_aside: set[tuple[str, int, int]] = set()

    def stop(self) -> None:
        """Idempotent: the loop finishes the batch under way (or its wait), commits what was handled, and ends."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def run(self, housekeeping: Callable[[], Awaitable[object]] | None = None, every_s: float = 600.0) -> None:
        """Consume until stopped. ``housekeeping`` (pruning, say) runs between batches: first 30 s after the start,
        then every ``every_s``."""
        try:
            async with AsyncExitStack() as stack:
                if self._engine is not None:
                    await wait_for_database(self._engine, self._stopping)
                self.producer = await started(lambda: build_producer(self._settings), "producer", self._stopping)
                stack.push_async_callback(self.producer.stop)
                self.consumer = await started(self._build_consumer, "consumer", self._stopping)
                stack.push_async_callback(self.consumer.stop)
                self.consuming = True
                log.info("consuming", extra={"service": self._service, "topics": self._topics})
                try:
                    await self._loop(housekeeping, every_s)
                finally:
                    self.consuming = False
        except Stopping:
            return

    def _build_consumer(self) -> AIOKafkaConsumer:
        return build_group_consumer(
            self._settings, self._group, self._instance, *self._topics, **self._consumer_options
        )

    async def _loop(self, housekeeping: Callable[[], Awaitable[object]] | None, every_s: float) -> None:
        assert self.consumer is not None  # noqa: S101 - set in run()
        next_housekeeping = time.monotonic() + _HOUSEKEEPING_FIRST_S
        # A commit is one request that writes a record per assigned partition to ``__consumer_offsets``: after every
        # batch, at a thousand records a second, the run history and the DLQ service made a dozen a second between
        # them. With ``commit_every_s`` a busy consumer commits that often, an idle one as soon as it finds nothing
        # new, and a stopping one before it ends; what a crash leaves uncommitted is handled again, which every
        # handler allows. Commits happen only between batches, where everything fetched has been handled.
        uncommitted = False
        committed_at = time.monotonic()
        while not self._stopping.is_set():
            if housekeeping is not None and time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + every_s
                await housekeeping()
            batch = await self.consumer.getmany(timeout_ms=100, max_records=self._max_records)
            records = [r for rs in batch.values() for r in rs]
            if records:
                await self.handle(records)
                uncommitted = True
                if time.monotonic() - committed_at < self._commit_every_s:
                    continue
            if uncommitted:
                await self._commit()
                uncommitted = False
                committed_at = time.monotonic()
        if uncommitted:
            await self._commit()

    async def _commit(self) -> None:
        """Commit what was handled. Lost to a rebalance, the records go to their partitions' new owner (perhaps
        this one again) and are applied again, harmlessly; a broker that cannot be reached is waited for."""
        assert self.consumer is not None  # noqa: S101 - set in run()
        backoff = Backoff(self._stopping)
        while True:
            try:
                await self.consumer.commit()
                self._progress.committed(self.consumer)
                return
            except (CommitFailedError, IllegalStateError) as exc:
                log.warning("commit lost to a rebalance; the batch will be handled again: %s", type(exc).__name__)
                return
            except Exception as exc:
                if not (is_transient(exc) or (isinstance(exc, KafkaError) and exc.retriable)):
                    raise
                log.warning("commit waits for Kafka: %s: %s", type(exc).__name__, exc)
            await backoff.wait()

    async def handle(self, records: Sequence[Record]) -> None:
        """Handle a batch; see the module docstring for what happens when that fails."""
        self._set_aside.clear()
        if await self._try(records):
            return
        for record in records:
            for attempt in range(1, _RECORD_ATTEMPTS + 1):
                error = await self._try_one(record)
                if error is None:
                    break
                if attempt == _RECORD_ATTEMPTS:
                    assert self.producer is not None  # noqa: S101 - set in run()
                    await self._quarantine.put(self.producer, record, error)
                else:
                    await asyncio.sleep(0.1 * attempt)

    async def _try(self, records: Sequence[Record]) -> bool:
        """Handle ``records`` together, waiting out transient failures; False when a record itself is at fault."""
        backoff = Backoff(self._stopping)
        while True:
            try:
                await self._handler(records)
                self.waiting_on = None
                return True
            except Exception as exc:  # noqa: BLE001 - whatever a handler raises, the batch is retried or split
                if not is_transient(exc):
                    log.warning(
                        "a batch of %d failed; handling its records one at a time: %s: %s",
                        len(records),
                        type(exc).__name__,
                        exc,
                    )
                    return False
                self.waiting_on = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                log.warning("batch waits for a dependency: %s", self.waiting_on)
            await backoff.wait()

    async def _try_one(self, record: Record) -> str | None:
        """None once handled; the error otherwise (transient failures are waited out first)."""
        backoff = Backoff(self._stopping)
        while True:
            try:
                await self._handler([record])
                return None
            except Exception as exc:  # noqa: BLE001 - whatever a handler raises, the record is retried or set aside
                if not is_transient(exc):
                    return f"{type(exc).__name__}: {exc}"
            await backoff.wait()

    async def set_aside(self, record: Record, error: str) -> None:
        """For handlers: put a record they cannot read (undecodable) into quarantine and go on."""
        assert self.producer is not None  # noqa: S101 - set in run()
        where = (record.topic, record.partition, record.offset)
        if where not in self._set_aside:
            await self._quarantine.put(self.producer, record, error)
            self._set_aside.add(where)

    async def health(self) -> tuple[bool, dict[str, object]]:
        if not self.consuming or self.consumer is None:
            return False, {"consuming": False}
        progressing, lag = self._progress.check(self.consumer)
        details: dict[str, object] = {"consuming": True, "lag": lag, "progressing": progressing}
        if self.waiting_on is not None:
            details["waiting_on"] = self.waiting_on
        return progressing, details
