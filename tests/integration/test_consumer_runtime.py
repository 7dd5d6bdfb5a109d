"""The consumer runtime against the real broker and database: poison records are set aside, the rest handled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from sqlalchemy import select

from services.api.recorder import Recorder
from services.executor.keys import KeyStore
from shared.consumer_runtime import QuarantineTopic
from shared.crypto import SecretBox
from shared.db.engine import create_engine
from shared.db.tables import runs
from shared.events import SigningKeysUpdated, encode_event
from shared.events.signing import EncryptedSigningKey, SigningKeysData
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
