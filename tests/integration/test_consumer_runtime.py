"""The consumer runtime against the real broker and database: poison records are set aside, the rest handled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.api.recorder import Recorder
from services.executor.keys import KeyStore
from shared.consumer_runtime import ConsumerRuntime, QuarantineTopic
from shared.crypto import SecretBox
from shared.db.engine import create_engine
from shared.db.tables import runs
from shared.events import SigningKeysUpdated, encode_event
from shared.events.signing import EncryptedSigningKey, SigningKeysData
from shared.kafka import admin_client, group_id
from shared.runid import planned_run_id
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import QUARANTINE, RUNS_DUE, SIGNING_KEYS, topic_name
from tests.integration.helpers import read_records
from tests.integration.test_recorder import _due, created_schedule


async def _wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if await predicate():
            return True
        await asyncio.sleep(0.2)
    return False


async def test_a_poison_record_is_quarantined_and_the_records_after_it_are_handled(
    settings: Settings, client: httpx.AsyncClient, tenant: str
) -> None:
    schedule, t0 = await created_schedule(settings, client, tenant)
    before, after = t0, t0 + timedelta(minutes=1)
    # Decodable, but the database refuses it (a tenant id longer than its column): a record at fault, not an outage.
    stranger = {**schedule, "tenant": "t" * 300}
    key = str(schedule["id"]).encode()
    refused = _due(stranger, t0 + timedelta(minutes=2))
    poison_key = f"poison-{uuid.uuid4().hex[:8]}".encode()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        topic = topic_name(settings, RUNS_DUE)
        for value, k in [
            (_due(schedule, before), key),
            (refused, poison_key),
            (b"{not an event", poison_key),
            (_due(schedule, after), key),
        ]:
            await producer.send_and_wait(topic, value, key=k, partition=0)
    finally:
        await producer.stop()

    engine = create_engine(settings)
    recorder = Recorder(settings.model_copy(update={"instance_id": f"rec-{uuid.uuid4().hex[:6]}"}), engine)
    running = asyncio.create_task(recorder.run())
    try:
        wanted = {planned_run_id(uuid.UUID(str(schedule["id"])), t) for t in (before, after)}

        async def both_recorded() -> bool:
            async with engine.connect() as conn:
                found = (await conn.execute(select(runs.c.id).where(runs.c.id.in_(wanted)))).scalars().all()
            return set(found) == wanted

        assert await _wait_for(both_recorded, 60), "the records around the poison were not recorded"
        quarantined = await read_records(
            settings, topic_name(settings, QUARANTINE), keys=[poison_key.decode()], count=2
        )
        assert len(quarantined) == 2
        errors = sorted(dict(r.headers)["chime-quarantine-error"].decode() for r in quarantined)
        assert "value too long" in errors[0], errors
        assert errors[1].startswith("undecodable"), errors
        for record in quarantined:
            headers = dict(record.headers)
            assert headers["chime-quarantine-topic"] == topic.encode()
            assert headers["chime-quarantine-service"] == b"recorder"
        assert {r.value for r in quarantined} == {refused, b"{not an event"}
        counted = recorder.registry.get_sample_value("chime_quarantined_records_total", {"topic": topic})
        assert counted == 2
        ready, details = await recorder.health()
        assert ready, details
    finally:
        recorder.stop()
        await asyncio.wait_for(running, 30)
        await engine.dispose()


async def test_a_signing_keys_record_that_cannot_be_loaded_is_quarantined_and_the_next_tenant_loads(
    settings: Settings, tenant: str
) -> None:
    box = SecretBox(settings.master_key.get_secret_value())
    now = utcnow()

    def keys_record(tenant_id: str, ciphertext: str) -> bytes:
        data = SigningKeysData(
            tenant_id=tenant_id,
            version=1,
            keys=[EncryptedSigningKey(key_id="k1", ciphertext=ciphertext, created_at=now)],
        )
        return encode_event(SigningKeysUpdated(subject=tenant_id, tenant=tenant_id, time=now, data=data))

    stranger = f"{tenant}-other"
    topic = topic_name(settings, SIGNING_KEYS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    registry = CollectorRegistry()
    store = KeyStore(settings, QuarantineTopic(settings, "executor", registry))
    try:
        for value, key in [
            (b"{not an event", tenant),
            (keys_record(stranger, "not ciphertext of this master key"), stranger),
            (keys_record(tenant, box.encrypt("whsec_dGVzdA==")), tenant),
        ]:
            await producer.send_and_wait(topic, value, key=key.encode(), partition=0)
        await store.start(producer)
        await asyncio.wait_for(store.caught_up.wait(), 30)
        assert store.secrets_for(tenant) == ["whsec_dGVzdA=="]
        assert store.secrets_for(stranger) == []
        assert store.running
        quarantined = await read_records(settings, topic_name(settings, QUARANTINE), keys=[tenant, stranger], count=2)
        errors = sorted(dict(r.headers)["chime-quarantine-error"].decode() for r in quarantined)
        assert errors[0].startswith("signing keys of tenant") and "do not decrypt" in errors[0], errors
        assert errors[1].startswith("undecodable"), errors
        assert registry.get_sample_value("chime_quarantined_records_total", {"topic": topic}) == 2
    finally:
        await store.stop()
        await producer.stop()
    assert not store.running


async def _committed(settings: Settings, group: str, tp: TopicPartition) -> int | None:
    async with admin_client(settings) as admin:
        offsets = await admin.list_consumer_group_offsets(group_id(settings, group))
    meta = offsets.get(tp)
    return None if meta is None or meta.offset < 0 else int(meta.offset)


async def test_a_busy_consumer_commits_on_its_interval_an_idle_one_at_once_and_a_stopping_one_before_it_ends(
    settings: Settings,
) -> None:
    topic = f"{settings.topic_prefix}commits-{uuid.uuid4().hex[:8]}"
    tp = TopicPartition(topic, 0)
    async with admin_client(settings) as admin:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()

    async def produce(count: int) -> None:
        for n in range(count):
            await producer.send(topic, f"r{n}".encode(), partition=0)
        await producer.flush()

    try:
        # Busy: fifty records read ten at a time, one batch after the other. The group's committed offset, read at
        # each batch, stays where it was (a commit per batch would have moved it to 10, 20, ...).
        group = f"commits-{uuid.uuid4().hex[:6]}"
        seen_while_busy: list[int | None] = []
        handled = 0
        stop_at: int | None = None
        last = asyncio.Event()

        async def handler(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
            nonlocal handled
            if stop_at is None:
                seen_while_busy.append(await _committed(settings, group, tp))
            handled += len(records)
            if handled == stop_at:
                runtime.stop()
                last.set()

        await produce(50)
        runtime = ConsumerRuntime(
            settings,
            service="test",
            group=group,
            instance=f"i-{uuid.uuid4().hex[:6]}",
            topics=[topic],
            handler=handler,
            registry=CollectorRegistry(),
            max_records=10,
            max_poll_records=10,
            commit_every_s=3600,
        )
        running = asyncio.create_task(runtime.run())
        try:
            # Idle: once nothing more comes, what was handled is committed without waiting out the interval.
            async def all_committed() -> bool:
                return await _committed(settings, group, tp) == 50

            assert await _wait_for(all_committed, 30), (handled, seen_while_busy)
            assert handled == 50
            assert seen_while_busy == [None] * 5
            # Stopping: a batch handled just before the stop is committed before the loop ends.
            stop_at = 53
            await produce(3)
            await asyncio.wait_for(last.wait(), 30)
            await asyncio.wait_for(running, 30)
            assert await _committed(settings, group, tp) == 53
        finally:
            runtime.stop()
            await asyncio.wait_for(running, 30)
    finally:
        await producer.stop()
        async with admin_client(settings) as admin:
            await admin.delete_topics([topic])
