"""End-to-end fixtures: one stack of real processes per test session, a recording sink, an API client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.api.migrate import migrate
from shared.settings import Settings, load_settings
from shared.topics import create_topics, delete_topics
from tests.e2e.stack import RecordingSink, Stack
from tests.integration.helpers import create_database, drop_database


@pytest.fixture(scope="session")
async def e2e_settings(stack_env: dict[str, str]) -> AsyncIterator[Settings]:
    settings = load_settings(
        _env_file=None,
        kafka_bootstrap=stack_env["CHIME_KAFKA_BOOTSTRAP"],
        database_url=await create_database(stack_env["CHIME_DATABASE_URL"]),
        topic_prefix=f"e{uuid.uuid4().hex[:8]}.chime.",
        partitions=4,
        allow_private_targets=True,
    )
    await migrate(settings)
    await create_topics(settings)
    yield settings
    await delete_topics(settings)
    await drop_database(settings.database_url)


@pytest.fixture(scope="session")
async def stack(e2e_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    log_dir: Path = tmp_path_factory.mktemp("stack")
    running = Stack(e2e_settings, log_dir)
    try:
        await running.start_all()
        yield running
    finally:
        codes = running.stop_all()
    assert all(code == 0 for code in codes.values()), f"unclean shutdown: {codes}"


@pytest.fixture(scope="session")
async def sink() -> AsyncIterator[RecordingSink]:
    recording = RecordingSink()
    await recording.start()
    yield recording
    await recording.stop()


@pytest.fixture(scope="session")
async def api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client
