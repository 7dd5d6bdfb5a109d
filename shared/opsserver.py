"""``/health`` and ``/metrics`` for the services that are not the API, each on a port of its own."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


class OpsServer:
    """An async context manager; ``health`` returns (healthy, details)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, health: HealthCheck) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._health = health
        self._runner: web.AppRunner | None = None

    async def _health_view(self, _: web.Request) -> web.Response:
        ok, details = await self._health()
        body = json.dumps({"status": "ok" if ok else "degraded", **details}, default=str)
        return web.Response(text=body, status=200 if ok else 503, content_type="application/json")

    async def _metrics_view(self, _: web.Request) -> web.Response:
        # The health check brings the gauges it computes (consumer lag) up to date before they are read.
        await self._health()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._health_view)
        app.router.add_get("/metrics", self._metrics_view)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
