"""The outbox: versions reach Kafka in order with two API processes, and nothing is lost while Kafka is down."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from services.api.app import create_app
from services.api.migrate import migrate
from services.api.outbox import OutboxRelay, backlog
from services.devstack.kafka import LocalKafka
from shared.db.tables import outbox
from shared.events import decode_event
from shared.settings import Settings
from shared.topics import SCHEDULES, create_topics, topic_name
from tests.e2e.stack import free_port
from tests.integration.helpers import (
    auth,
    create_database,
    drop_database,
    installation,
    read_all,
    read_records,
    schedule_body,
)


def _process_env(settings: Settings, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "CHIME_DATABASE_URL": settings.database_url,
        "CHIME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CHIME_TOPIC_PREFIX": settings.topic_prefix,
        "CHIME_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "CHIME_MASTER_KEY": settings.master_key.get_secret_value(),
        "CHIME_ALLOW_PRIVATE_TARGETS": "true",
        "CHIME_RATE_LIMIT_PER_SECOND": "100000",
        "CHIME_RUN_NOW_PER_MINUTE": "1000000",
        "CHIME_REPLAYS_PER_MINUTE": "1000000",
        "CHIME_API_PORT": str(port),
        "CHIME_LOG_LEVEL": "WARNING",
    }


@pytest.fixture
async def two_api_processes(settings: Settings) -> AsyncIterator[list[str]]:
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen([sys.executable, "-m", "services.cli", "api"], env=_process_env(settings, port))
        for port in ports
    ]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        async with httpx.AsyncClient() as client:
            for url in urls:
                for _ in range(150):
                    try:
                        if (await client.get(f"{url}/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail(f"API process at {url} did not start")
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            assert proc.wait(timeout=20) == 0, "the API process did not shut down cleanly on SIGTERM"


async def test_two_api_processes_publish_each_schedule_in_version_order(
    settings: Settings, tenant: str, two_api_processes: list[str]
) -> None:
    headers = auth(settings, tenant)
    changes_per_process = 10
    async with httpx.AsyncClient(timeout=30) as client:
        ids = []
        for _ in range(4):
            created = await client.post(f"{two_api_processes[0]}/api/schedules", json=schedule_body(), headers=headers)
            assert created.status_code == 201
            ids.append(created.json()["id"])

        async def hammer(base: str, worker: int) -> list[int]:
            codes = []
            for i in range(changes_per_process):
                for schedule_id in ids:
                    body = schedule_body(name=f"w{worker}-{i}")
                    response = await client.put(f"{base}/api/schedules/{schedule_id}", json=body, headers=headers)
                    codes.append(response.status_code)
            return codes

        results = await asyncio.gather(*(hammer(url, n) for n, url in enumerate(two_api_processes)))
    assert {code for codes in results for code in codes} == {200}

    expected_versions = list(range(1, 2 * changes_per_process + 2))
    records = await read_records(
        settings, topic_name(settings, SCHEDULES), keys=ids, count=len(ids) * len(expected_versions), timeout=60
    )
    by_key: dict[str, list[int]] = {}
    for record in records:
        assert record.key is not None
        by_key.setdefault(record.key.decode(), []).append(decode_event(record.value).data.version)
    expected = {schedule_id: expected_versions for schedule_id in ids}
    if by_key != expected:
        # Say whether versions are late (still in the outbox), or repeated or lost on the way (marked published).
        engine = create_async_engine(settings.database_url)
        try:
            async with engine.connect() as conn:
                unpublished, oldest_s = await backlog(conn)
        finally:
            await engine.dispose()
        pytest.fail(
            f"versions on the topic {by_key}; outbox rows still unpublished: {unpublished} (oldest {oldest_s:.1f} s)"
        )


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker this test may stop and start, apart from the session's shared one."""
    broker = LocalKafka(port=free_port(), controller_port=free_port(), state_dir=tmp_path / "kafka")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.timeout(240)
async def test_changes_made_while_kafka_is_down_arrive_in_order_once_it_is_back(
    settings: Settings, own_broker: LocalKafka, tenant: str
) -> None:
    isolated = settings.model_copy(
        update={
            "kafka_bootstrap": own_broker.bootstrap,
            "database_url": await create_database(settings.database_url),
            "topic_prefix": f"o{uuid.uuid4().hex[:6]}.",
            "kafka_request_timeout_ms": 3000,
        }
    )
    await migrate(isolated)
    await create_topics(isolated)
    app = create_app(isolated)
    headers = auth(isolated, tenant)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as client:
            created = await client.post("/api/schedules", json=schedule_body(), headers=headers)
            schedule_id = created.json()["id"]
            before = await read_records(isolated, topic_name(isolated, SCHEDULES), keys=[schedule_id], count=1)
            assert len(before) == 1

            await asyncio.to_thread(own_broker.stop)
            codes = []
            for i in range(20):
                response = await client.patch(
                    f"/api/schedules/{schedule_id}", json={"name": f"while-down-{i}"}, headers=headers
                )
                codes.append(response.status_code)
            assert codes == [200] * 20
            degraded = await client.get("/health/detailed")
            assert degraded.status_code == 503
            assert degraded.json()["checks"]["kafka"]["status"] == "down"

            await asyncio.to_thread(own_broker.start)
            records = await read_records(
                isolated, topic_name(isolated, SCHEDULES), keys=[schedule_id], count=21, timeout=90
            )
    versions = [decode_event(r.value).data.version for r in records]
    assert versions == list(range(1, 22))
    names = [decode_event(r.value).data.name for r in records[1:]]  # type: ignore[union-attr]
    assert names == [f"while-down-{i}" for i in range(20)]
    await drop_database(isolated.database_url)


async def test_a_round_passes_over_rows_another_relay_published_after_its_snapshot(stack_env: dict[str, str]) -> None:
    """The interleaving behind repeated versions: a round's snapshot is older than another relay's commit of the
    same rows (that relay released the lock in between). Here the other round holds its row when this round starts,
    so the order is certain: this round must publish only the row nobody took."""
    async with installation(stack_env) as own:
        engine = create_async_engine(own.database_url)
        relay = OutboxRelay(own, engine)
        try:
            async with engine.begin() as conn:
                rows = [
                    {
                        "aggregate_id": f"a{n}",
                        "version": 1,
                        "topic_suffix": SCHEDULES.suffix,
                        "key": f"k{n}".encode(),
                        "value": b"{}",
                        "headers": {},
                    }
                    for n in range(2)
                ]
                await conn.execute(insert(outbox), rows)
                first = (await conn.execute(select(func.min(outbox.c.id)))).scalar_one()
            async with engine.connect() as other:
                marked = await other.begin()
                await other.execute(update(outbox).where(outbox.c.id == first).values(published_at=func.now()))
                round_ = asyncio.create_task(relay.relay_once())
                await asyncio.sleep(1.0)
                assert not round_.done(), "the round should wait for the row the other round holds"
                await marked.commit()
            assert await asyncio.wait_for(round_, timeout=30) == 1
            published = await read_all(own, topic_name(own, SCHEDULES))
            assert [r.key for r in published] == [b"k1"]
        finally:
            await relay.stop()
            await engine.dispose()
