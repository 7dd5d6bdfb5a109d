"""``/health`` (liveness), ``/health/detailed`` (readiness) and ``/metrics`` for the services that are not the API,
each on a port of its own."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from shared.health import Check, KafkaProbe, check_all
from shared.settings import Settings

HealthCheck = Callable[[], Awaitable[tuple[bool, dict[str, object]]]]


class OpsServer:
    """An async context manager. ``health`` returns (ready, details): whether the service does its work (consuming
    and progressing, owning partitions); Kafka (asked for metadata) and ``dependencies`` are checked beside it for
    ``/health/detailed``."""

    def __init__(
        self,
        settings: Settings,
        port: int,
        registry: CollectorRegistry,
        health: HealthCheck,
        dependencies: dict[str, Check] | None = None,
    ) -> None:
        self._host = settings.ops_host
        self._port = port
        self._registry = registry
        self._health = health
        self._kafka = KafkaProbe(settings)
        self._dependencies = {"kafka": self._kafka.check, **(dependencies or {})}
        self._runner: web.AppRunner | None = None

    async def _live_view(self, _: web.Request) -> web.Response:
        # Answering at all is the liveness signal: the event loop runs.
        return web.json_response({"status": "ok"})

    async def _ready_view(self, _: web.Request) -> web.Response:
        ok, details = await self._health()
        checks = await check_all(self._dependencies)
        ok = ok and all(c.status == "ok" for c in checks.values())
        body = {
            "status": "ok" if ok else "degraded",
            **details,
            "checks": {name: c.model_dump() for name, c in checks.items()},
        }
        return web.Response(
            text=json.dumps(body, default=str), status=200 if ok else 503, content_type="application/json"
        )

    async def _metrics_view(self, _: web.Request) -> web.Response:
        # The health check brings the gauges it computes (consumer lag) up to date before they are read.
        await self._health()
        return web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/health", self._live_view)
        app.router.add_get("/health/detailed", self._ready_view)
        app.router.add_get("/metrics", self._metrics_view)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._kafka.close()

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
