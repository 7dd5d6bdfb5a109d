"""Transactional outbox: events are written in the same transaction as the change, then relayed to Kafka.

Ordering: each schedule's change locks its row, so a later version's outbox row is inserted only after the
earlier version committed and always gets a higher id. The relay publishes in id order, and only one relay
(across all API processes) publishes at a time, holding a transaction-level advisory lock for the batch.
So every schedule's versions reach Kafka in order, even with several API replicas.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from prometheus_client import Counter, Histogram
from sqlalchemy import BigInteger, Integer, bindparam, delete, insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.db.engine import DriverStatement, driver_transaction
from shared.db.tables import idempotency_keys, outbox, run_requests
from shared.events import CONTENT_TYPE, Envelope, encode_event
from shared.kafka import build_producer
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import TopicSpec, topic_name

log = logging.getLogger(__name__)

_RELAY_LOCK_KEY = 727466
# The first round after a quiet spell takes few rows: a change's first records (a bulk pause's stops come before
# its schedule versions) leave in milliseconds instead of after the whole backlog has been read.
_FIRST_BATCH = 50
_PRUNE_EVERY_S = 600.0
# While commits stream in, a round starts at most this often: rows committed meanwhile leave together, instead of
# a round (a transaction, a produce request, a commit) for every commit or two. A change after a quiet spell is
# not held: its round starts at once.
_ROUND_GAP_S = 0.01


_INSERT = insert(outbox)
# A round is one statement inside its transaction: take the relay's lock, and if it was free, take the oldest
# unpublished rows and mark them published. The marks are undone with the transaction when the broker does not
# acknowledge the rows. It always answers at least one row: ``got`` says whether the lock was free, and a row
# without an id stands for "nothing to publish". ``RETURNING`` keeps no order, so the rows are sorted again.
# The statement's snapshot is taken before it gets the lock: when another relay commits its round in between, the
# subquery still sees that round's rows as unpublished. ``published_at IS NULL`` on the row itself is checked again
# against the committed version of a row another transaction changed, so those rows are passed over instead of
# published a second time (which two API processes did, now and then, in the version-order test).
_ROUND = DriverStatement(
    text(
        """
        WITH lock AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(:lock_key) AS got),
        taken AS (
            UPDATE outbox SET published_at = now()
            WHERE (SELECT got FROM lock)
              AND published_at IS NULL
              AND id IN (SELECT id FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT :batch)
            RETURNING id, topic_suffix, key, value, headers, created_at
        )
        SELECT lock.got, taken.* FROM lock LEFT JOIN taken ON true
        """
    ).bindparams(bindparam("lock_key", type_=BigInteger), bindparam("batch", type_=Integer))
)


OUTBOX_COLUMNS = ("aggregate_id", "version", "topic_suffix", "key", "value", "headers")


def outbox_values(event: Envelope, topic: TopicSpec, key: str, aggregate_id: str, version: int) -> dict[str, Any]:
    """The outbox row of ``event`` (its ``OUTBOX_COLUMNS``), for statements that insert it themselves."""
    return {
        "aggregate_id": aggregate_id,
        "version": version,
        "topic_suffix": topic.suffix,
        "key": key.encode(),
        "value": encode_event(event),
        "headers": {"tenant": event.tenant, "content-type": CONTENT_TYPE},
    }


async def enqueue(
    conn: AsyncConnection, event: Envelope, topic: TopicSpec, *, key: str, aggregate_id: str, version: int
) -> None:
    """Add ``event`` to the outbox inside the caller's transaction."""
    await conn.execute(_INSERT, outbox_values(event, topic, key, aggregate_id, version))


async def enqueue_many(conn: AsyncConnection, events: Sequence[tuple[Envelope, TopicSpec, str, int]]) -> None:
    """Add many (event, topic, key, version) to the outbox in one round trip; the key is the aggregate id."""
    rows = [outbox_values(event, topic, key, key, version) for event, topic, key, version in events]
    await conn.execute(_INSERT, rows)


class RelayMetrics(Protocol):
    published: Counter
    lag: Histogram


class OutboxRelay:
    """Publishes outbox rows to Kafka in id order. Survives Kafka outages: rows wait until it is back."""

    def __init__(self, settings: Settings, engine: AsyncEngine, metrics: RelayMetrics | None = None) -> None:
        self._settings = settings
        self._engine = engine
        # Rounds manage their transaction on the driver itself (``driver_transaction``).
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        self.published_total = 0
        self.last_error: str | None = None

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows, so they leave without waiting for the next poll."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=10)
            except TimeoutError:
                self._task.cancel()
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), timeout=5)
            except (TimeoutError, KafkaError):
                log.warning("outbox producer did not stop cleanly")
            self._producer = None

    async def __aenter__(self) -> OutboxRelay:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = build_producer(self._settings)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _reset_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), timeout=2)
            except (TimeoutError, KafkaError, OSError):
                pass

    async def _run(self) -> None:
        poll = self._settings.outbox_poll_interval_ms / 1000
        backoff = 0.1
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + 5
        size = min(_FIRST_BATCH, self._settings.outbox_batch_size)
        while not self._stopping:
            started = loop.time()
            try:
                moved = await self.relay_once(size)
                backoff = 0.1
                self.last_error = None
                if loop.time() >= next_prune:
                    await self.prune()
                    next_prune = loop.time() + _PRUNE_EVERY_S
            except (KafkaError, OSError, TimeoutError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay cannot reach Kafka, retrying in %.1fs: %s", backoff, self.last_error)
                await self._reset_producer()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception:
                log.exception("outbox relay iteration failed")
                await asyncio.sleep(1.0)
                continue
            if moved is None:
                # Another process holds the relay lock; look again soon so our own rows do not wait a poll.
                await asyncio.sleep(0.02)
            else:
                # Rounds that find many rows (a backlog, or a busy API) stay full; a light one goes back to small.
                full = self._settings.outbox_batch_size
                more = moved >= size  # the round was cut short: there are more rows now
                size = full if moved >= _FIRST_BATCH else min(_FIRST_BATCH, full)
                if more:
                    continue
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=poll)
                except TimeoutError:
                    pass
                rest = started + _ROUND_GAP_S - loop.time()
                if rest > 0 and not self._stopping:
                    await asyncio.sleep(rest)

    async def relay_once(self, batch: int | None = None) -> int | None:
        """Publish one batch (``batch`` rows at most, CHIME_OUTBOX_BATCH_SIZE by default). Returns how many rows
        moved, or ``None`` when another relay holds the lock."""
        size = batch or self._settings.outbox_batch_size
        async with self._autocommit.connect() as conn, driver_transaction(conn) as driver:
            answer = await _ROUND.fetch(driver, {"lock_key": _RELAY_LOCK_KEY, "batch": size})
            if not answer[0]["got"]:
                return None
            rows = sorted((r for r in answer if r["id"] is not None), key=lambda r: r["id"])
            if not rows:
                return 0
            producer = await self._ensure_producer()
            futures: list[asyncio.Future[Any]] = []
            for row in rows:
                headers = [(k, str(v).encode()) for k, v in row["headers"].items()]
                topic = f"{self._settings.topic_prefix}{row['topic_suffix']}"
                futures.append(await producer.send(topic, value=row["value"], key=row["key"], headers=headers))
            timeout = 2 * self._settings.kafka_request_timeout_ms / 1000
            await asyncio.wait_for(asyncio.gather(*futures), timeout=timeout)
        self.published_total += len(rows)
        if self._metrics is not None:
            now = utcnow()
            self._metrics.published.inc(len(rows))
            for row in rows:
                self._metrics.lag.observe(max(0.0, (now - row["created_at"]).total_seconds()))
        return len(rows)

    async def prune(self) -> None:
        """Drop published rows, run-now requests and expired idempotency keys past their retention."""
        cutoff = utcnow() - timedelta(days=self._settings.run_retention_days)
        async with self._engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.published_at < cutoff))
            await conn.execute(delete(run_requests).where(run_requests.c.requested_at < cutoff))
            await conn.execute(
                delete(idempotency_keys).where(idempotency_keys.c.created_at < utcnow() - timedelta(hours=24))
            )


async def backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Unpublished rows and the age in seconds of the oldest one."""
    row = (
        await conn.execute(
            text(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) "
                "FROM outbox WHERE published_at IS NULL"
            )
        )
    ).one()
    return int(row[0]), float(row[1])


__all__ = ["OutboxRelay", "backlog", "enqueue", "topic_name"]
