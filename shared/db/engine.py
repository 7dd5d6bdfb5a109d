"""The async engine, configured from settings."""

from __future__ import annotations

import ssl
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.settings import Settings


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    connect_args: dict[str, Any] = {"server_settings": {"application_name": "chime"}}
    if settings.database_ssl in ("require", "verify-full"):
        ctx = ssl.create_default_context()
        if settings.database_ssl == "require":
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        connect_args["ssl"] = ctx
    opts: dict[str, Any] = {
        "pool_size": settings.database_pool_size,
        "max_overflow": settings.database_pool_size,
        "pool_pre_ping": True,
        "connect_args": connect_args,
    }
    opts.update(overrides)
    return create_async_engine(settings.database_url, **opts)
