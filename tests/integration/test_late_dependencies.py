"""Services started before Kafka and Postgres wait for them, then come up healthy on their own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from services.api.migrate import migrate
from services.devstack.kafka import LocalKafka
from shared.settings import Settings
from shared.topics import create_topics
from tests.e2e.stack import Stack
from tests.integration.helpers import create_database, drop_database
from tests.integration.test_outbox import free_port

# Services whose health does not need the API; each starts with neither dependency reachable.
_WAITERS = ("recorder", "dlq", "executor")


@pytest.fixture
def late_broker(tmp_path: Path) -> Iterator[LocalKafka]:
    """A broker on ports nothing listens on yet; the test starts it when it wants Kafka to appear."""
    broker = LocalKafka(port=free_port(), controller_port=free_port(), state_dir=tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


async def _health(stack: Stack, name: str) -> int | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(stack.ready_url(name))).status_code
    except httpx.TransportError:
        return None


@pytest.mark.timeout(300)
async def test_services_started_before_kafka_and_postgres_wait_and_then_become_healthy(
    settings: Settings, late_broker: LocalKafka, tmp_path: Path
) -> None:
    # A database URL whose database does not exist yet: to the services, Postgres is not there.
    server = make_url(settings.database_url)
    pending_url = server.set(database=f"chime_late_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    late = settings.model_copy(
        update={
            "kafka_bootstrap": late_broker.bootstrap,
            "database_url": pending_url,
            "topic_prefix": f"l{uuid.uuid4().hex[:6]}.chime.",
        }
    )
    stack = Stack(late, tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    for name in _WAITERS:
        stack.start(name)
    try:
        await asyncio.sleep(5)
        for name in _WAITERS:
            assert stack.procs[name].poll() is None, f"{name} exited:\n{stack.log_tail(name)}"
            assert await _health(stack, name) in (None, 503), name

        # Postgres appears (the database is created and migrated), then Kafka and its topics.
        await create_database(settings.database_url, name=make_url(pending_url).database)
        await migrate(late)
        await asyncio.to_thread(late_broker.start)
        await create_topics(late)

        for name in _WAITERS:
            await stack.wait_healthy(name, timeout=120)
        assert "waiting for Kafka" in stack.log_tail("executor", 400)
        assert "waiting for Postgres" in stack.log_tail("recorder", 400)
    finally:
        codes = stack.stop_all()
        await drop_database(pending_url)
    assert codes == dict.fromkeys(_WAITERS, 0), codes
