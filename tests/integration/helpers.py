"""Helpers for tests against the real services."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.api.auth import mint_token
from services.api.migrate import migrate
from shared.settings import Settings, load_settings
from shared.topics import create_topics, delete_topics


def auth(settings: Settings, tenant: str, **kwargs: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, tenant=tenant, **kwargs)}"}


def schedule_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"job-{uuid.uuid4().hex[:8]}",
        "type": "interval",
        "interval_seconds": 60,
        "payload": {"url": "http://127.0.0.1:9/hook"},
    }
    body.update(overrides)
    return body


async def create_database(server_url: str, name: str | None = None) -> str:
    """A fresh, empty database on the test server (``name``, or a new one); returns its URL."""
    url = make_url(server_url)
    name = name or f"chime_test_{uuid.uuid4().hex[:10]}"
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        await engine.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


async def drop_database(database_url: str) -> None:
    """Drop a database made by ``create_database`` (connections still open to it are closed first)."""
    url = make_url(database_url)
    engine = create_async_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
    finally:
        await engine.dispose()


@asynccontextmanager
async def installation(stack_env: dict[str, str], **overrides: Any) -> AsyncIterator[Settings]:
    """Settings for an installation of its own on the test stack: a new database, migrated, and topics under a new
    prefix, both deleted afterwards; ``overrides`` adjust the settings."""
    url = await create_database(stack_env["CHIME_DATABASE_URL"])
    options: dict[str, Any] = {
        "kafka_bootstrap": stack_env["CHIME_KAFKA_BOOTSTRAP"],
        "database_url": url,
        "topic_prefix": f"t{uuid.uuid4().hex[:8]}.chime.",
        "partitions": 4,
        "allow_private_targets": True,
        "rate_limit_per_second": 100_000,
        "outbox_poll_interval_ms": 50,
    }
    settings = load_settings(_env_file=None, **(options | overrides))
    try:
        await migrate(settings)
        await create_topics(settings)
        yield settings
    finally:
        await delete_topics(settings)
        await drop_database(url)


@asynccontextmanager
async def _from_start(settings: Settings, topic: str) -> AsyncIterator[tuple[AIOKafkaConsumer, list[TopicPartition]]]:
    """A consumer outside any group, assigned every partition of ``topic`` and positioned at its beginning."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        yield consumer, tps
    finally:
        await consumer.stop()


async def read_records(
    settings: Settings, topic: str, *, keys: Iterable[str], count: int, timeout: float = 30.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read ``topic`` from the beginning until ``count`` records with one of ``keys`` arrived (or time runs out)."""
    wanted = {k.encode() for k in keys}
    async with _from_start(settings, topic) as (consumer, _):
        found: list[ConsumerRecord[bytes, bytes]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < count and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(r for r in records if r.key in wanted)
        return found


async def read_all(settings: Settings, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic`` from the beginning up to its end as of the call."""
    async with _from_start(settings, topic) as (consumer, tps):
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        found: list[ConsumerRecord[bytes, bytes]] = []
        while left:
            batch = await consumer.getmany(*left, timeout_ms=1000, max_records=5000)
            for tp, records in batch.items():
                found.extend(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return found


@contextmanager
def live_api(settings: Settings, log: Path, **env: str) -> Iterator[str]:
    """A `chime api` process on a port of its own over ``settings``' database and broker; yields its URL."""
    with live_api_process(settings, log, env) as (url, _):
        yield url


@contextmanager
def live_api_process(
    settings: Settings, log: Path, env: dict[str, str], *, ready: bool = True
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``live_api`` with ``env`` added, yielding the process too (at once if not ``ready``, else once it answers);
    it is stopped (if still running) when the block ends."""
    from tests.e2e.stack import free_port

    port = free_port()
    variables = {
        **os.environ,
        "CHIME_DATABASE_URL": settings.database_url,
        "CHIME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CHIME_TOPIC_PREFIX": settings.topic_prefix,
        "CHIME_API_HOST": "127.0.0.1",
        "CHIME_API_PORT": str(port),
        "CHIME_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "CHIME_ALLOW_PRIVATE_TARGETS": str(settings.allow_private_targets).lower(),
        "CHIME_LOG_LEVEL": "WARNING",
        **env,
    }
    # Started beside its log, not in the checkout, so a developer's .chime/dev.env plays no part.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api"], env=variables, stdout=out, stderr=out, cwd=log.parent
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while ready:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)
