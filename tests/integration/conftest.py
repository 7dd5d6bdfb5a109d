"""Integration fixtures: a migrated database of its own, topics under a prefix of their own, an in-process API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI

from services.api.app import create_app
from services.api.migrate import migrate
from shared.settings import Settings, load_settings
from shared.topics import create_topics, delete_topics
from tests.integration.helpers import create_database, drop_database
from tests.integration.keyserver import KeyServer, serving


@pytest.fixture(scope="session")
async def settings(stack_env: dict[str, str]) -> AsyncIterator[Settings]:
    url = await create_database(stack_env["CHIME_DATABASE_URL"])
    settings = load_settings(
        _env_file=None,
        kafka_bootstrap=stack_env["CHIME_KAFKA_BOOTSTRAP"],
        database_url=url,
        topic_prefix=f"t{uuid.uuid4().hex[:8]}.chime.",
        partitions=4,
        allow_private_targets=True,
        rate_limit_per_second=100_000,
        outbox_poll_interval_ms=50,
    )
    await migrate(settings)
    await create_topics(settings)
    yield settings
    await delete_topics(settings)
    await drop_database(settings.database_url)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as c:
        yield c


@pytest.fixture
async def idp() -> AsyncIterator[KeyServer]:
    """An identity provider's key set on loopback, for RS256 tokens."""
    server = KeyServer()
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", server._jwks)
    async with serving(app, server.port):
        yield server
