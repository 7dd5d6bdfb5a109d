"""Tenants' signing secrets, read from the compacted ``chime.signing-keys`` topic and decrypted in memory."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition

from shared.consumer_runtime import Backoff, DependencyMissing, QuarantineTopic, is_transient
from shared.crypto import SecretBox, SecretDecryptError
from shared.errors import EventDecodeError
from shared.events import SigningKeysUpdated, decode_event
from shared.kafka import build_consumer
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import SIGNING_KEYS, topic_name

log = logging.getLogger(__name__)


class KeyStore:
    """Consumes the whole topic (no group: every executor needs every tenant's keys).

    A record that does not decode or decrypt is set aside in ``chime.quarantine`` (each executor reads the topic
    from its start, so each start reports it again until the tenant's keys are rotated); a broker that goes away
    is waited for, so the loader outlives an outage instead of leaving the executor with stale keys.
    """

    def __init__(self, settings: Settings, quarantine: QuarantineTopic | None = None) -> None:
        self._settings = settings
        self._box = SecretBox(settings.master_key.get_secret_value())
        self._quarantine = quarantine
        self._producer: AIOKafkaProducer | None = None
        self._keys: dict[str, tuple[int, list[tuple[str, datetime | None]]]] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.caught_up = asyncio.Event()

    @property
    def running(self) -> bool:
        """False once the loader has ended for good (it never should while the executor runs)."""
        return self._task is not None and not self._task.done()

    def secrets_for(self, tenant: str) -> list[str]:
        entry = self._keys.get(tenant)
        if entry is None:
            return []
        now = utcnow()
        return [secret for secret, expires in entry[1] if expires is None or expires > now]

    async def wait_for(self, tenant: str, wait_seconds: float) -> list[str]:
        async def _has() -> list[str]:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.secrets_for(tenant)))
            return self.secrets_for(tenant)

        try:
            return await asyncio.wait_for(_has(), wait_seconds)
        except TimeoutError:
            return []

    async def start(self, producer: AIOKafkaProducer) -> None:
        """``producer`` looks up the topic's partitions (its metadata lookup is public API) and quarantines."""
        self._producer = producer
        topic = topic_name(self._settings, SIGNING_KEYS)
        consumer = build_consumer(self._settings, auto_offset_reset="earliest")
        try:
            await consumer.start()
            partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout=30)
            if not partitions:
                raise DependencyMissing(f"topic {topic} does not exist yet; `chime topics create` makes it")
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
        except BaseException:
            await consumer.stop()
            raise
        self._task = asyncio.create_task(self._run(consumer, end), name="signing-keys")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> None:
        remaining = {tp: offset for tp, offset in end.items() if offset > 0}
        if not remaining:
            self.caught_up.set()
        backoff = Backoff(self._stopping)
        try:
            while True:
                try:
                    batch = await consumer.getmany(timeout_ms=500)
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("signing keys: waiting for Kafka: %s: %s", type(exc).__name__, exc)
                    await backoff.wait()
                    continue
                for tp, records in batch.items():
                    for record in records:
                        error = self._apply(record.value)
                        if error is not None:
                            await self._set_aside(record, error)
                        if tp in remaining and record.offset + 1 >= remaining[tp]:
                            del remaining[tp]
                if not remaining and not self.caught_up.is_set():
                    self.caught_up.set()
                if batch:
                    async with self._changed:
                        self._changed.notify_all()
        finally:
            await consumer.stop()

    async def _set_aside(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        log.error("signing-keys record set aside: %s", error, extra={"offset": record.offset})
        if self._quarantine is None or self._producer is None:
            return
        try:
            await self._quarantine.put(self._producer, record, error)
        except Exception as exc:  # noqa: BLE001 - the keys that do load matter more than reporting one that did not
            log.warning("signing-keys record could not be quarantined: %s: %s", type(exc).__name__, exc)

    def _apply(self, raw: bytes | None) -> str | None:
        """Take in one record; why it could not be, or None."""
        if raw is None:
            return None
        try:
            event = decode_event(raw)
        except EventDecodeError as exc:
            return f"undecodable: {exc}"
        if not isinstance(event, SigningKeysUpdated):
            return f"not signing keys: {event.type}"
        data = event.data
        held = self._keys.get(data.tenant_id)
        if held is not None and held[0] >= data.version:
            return None
        try:
            keys = [(self._box.decrypt(k.ciphertext), k.expires_at) for k in data.keys]
        except SecretDecryptError:
            return f"signing keys of tenant {data.tenant_id} do not decrypt with CHIME_MASTER_KEY"
        self._keys[data.tenant_id] = (data.version, keys)
        return None
