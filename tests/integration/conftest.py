"""Integration fixtures: a migrated database of its own, topics under a prefix of their own, an in-process API."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI

from services.api.app import create_app
from shared.settings import Settings
from tests.integration.helpers import installation
from tests.integration.keyserver import KeyServer, serving


@pytest.fixture(scope="session")
async def settings(stack_env: dict[str, str]) -> AsyncIterator[Settings]:
    async with installation(stack_env) as settings:
        yield settings


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
