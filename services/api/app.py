"""The FastAPI application: ``create_app(settings)`` builds everything; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api import console, openapi, problems
from services.api.auth import TokenVerifier
from services.api.auto_pause import AutoPauser
from services.api.bodylimit import BodyLimitMiddleware
from services.api.consumer_lag import ConsumerLagProbe
from services.api.db.calendars_repo import CalendarRepository
from services.api.db.dlq_repo import DlqRepository
from services.api.db.flow_limits_repo import FlowLimitRepository
from services.api.db.keys_repo import SigningKeyRepository
from services.api.db.notification_endpoints_repo import NotificationEndpointRepository
from services.api.db.runs_repo import RunRepository
from services.api.db.schedules_repo import ScheduleRepository
from services.api.db.stats_repo import StatsRepository
from services.api.deps import Services
from services.api.metrics import ApiMetrics, MetricsMiddleware
from services.api.notifier import Notifier, NotifierMetrics, notification_client
from services.api.outbox import OutboxRelay
from services.api.ratelimit import RateLimiter
from services.api.routes import (
    bulk,
    calendars,
    dlq,
    flow_limits,
    health,
    notification_endpoints,
    runs,
    schedules,
    signing_keys,
    stats,
)
from shared.db.engine import create_engine
from shared.health import KafkaProbe
from shared.settings import Settings
from shared.version import chime_version


def _per_minute(engine: AsyncEngine, per_minute: float, kind: str) -> RateLimiter:
    """A cap of ``per_minute`` requests a minute per tenant, all of them usable at once."""
    return RateLimiter(
        engine, per_minute / 60, burst=per_minute, kind=kind, limit=f"{per_minute:g} {kind} requests per minute"
    )


def create_app(settings: Settings, *, run_relay: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            engine = create_engine(settings)
            stack.push_async_callback(engine.dispose)
            stack.push_async_callback(console_api.close)
            relay = OutboxRelay(settings, engine, app.state.metrics)
            if run_relay:
                await stack.enter_async_context(relay)
            app.state.rate_limiter = RateLimiter(engine, settings.rate_limit_per_second)
            app.state.kafka_probe = KafkaProbe(settings)
            stack.push_async_callback(app.state.kafka_probe.close)
            schedule_repo = ScheduleRepository(engine, settings, relay.notify)
            keys = SigningKeyRepository(engine, settings, relay.notify)
            if run_relay:
                metrics = app.state.metrics
                await stack.enter_async_context(AutoPauser(schedule_repo, metrics.auto_paused))
                notifier_metrics = NotifierMetrics(metrics.notifications_sent, metrics.notifications_dropped)
                client = notification_client(allow_private=settings.allow_private_targets)
                await stack.enter_async_context(Notifier(engine, keys, client, notifier_metrics))
            app.state.services = Services(
                settings=settings,
                engine=engine,
                relay=relay,
                schedules=schedule_repo,
                calendars=CalendarRepository(engine, schedule_repo, relay.notify),
                flow_limits=FlowLimitRepository(engine, settings.default_flow_concurrency, relay.notify),
                notification_endpoints=NotificationEndpointRepository(engine),
                runs=RunRepository(engine),
                stats=StatsRepository(engine),
                consumer_lag=ConsumerLagProbe(settings),
                keys=keys,
                dlq=DlqRepository(engine, relay.notify),
                run_now_limit=_per_minute(engine, settings.run_now_per_minute, "run-now"),
                replay_limit=_per_minute(engine, settings.replays_per_minute, "replay"),
            )
            yield

    app = FastAPI(
        title="Chime",
        version=chime_version(),
        description="Multi-tenant webhook scheduler: cron, interval and one-off schedules that call webhooks.",
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        generate_unique_id_function=openapi.operation_id,
    )
    openapi.install(app)
    app.state.verifier = TokenVerifier(settings)
    app.state.metrics = ApiMetrics()
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    problems.install(app)
    app.include_router(bulk.router)
    app.include_router(schedules.router)
    app.include_router(calendars.router)
    app.include_router(flow_limits.router)
    app.include_router(notification_endpoints.router)
    app.include_router(runs.router)
    app.include_router(signing_keys.router)
    app.include_router(dlq.router)
    app.include_router(stats.router)
    app.include_router(health.router)
    console_api = console.install(app, settings)
    return app
