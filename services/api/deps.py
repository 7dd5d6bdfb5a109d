"""Per-app singletons handed to routes through ``app.state`` (built in ``create_app``'s lifespan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.consumer_lag import ConsumerLagProbe
from services.api.db.calendars_repo import CalendarRepository
from services.api.db.dlq_repo import DlqRepository
from services.api.db.flow_limits_repo import FlowLimitRepository
from services.api.db.keys_repo import SigningKeyRepository
from services.api.db.notification_endpoints_repo import NotificationEndpointRepository
from services.api.db.runs_repo import RunRepository
from services.api.db.schedules_repo import ScheduleRepository
from services.api.db.stats_repo import StatsRepository
from services.api.outbox import OutboxRelay
from services.api.ratelimit import RateLimiter
from shared.settings import Settings


@dataclass(slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    relay: OutboxRelay
    schedules: ScheduleRepository
    calendars: CalendarRepository
    flow_limits: FlowLimitRepository
    notification_endpoints: NotificationEndpointRepository
    runs: RunRepository
    stats: StatsRepository
    consumer_lag: ConsumerLagProbe
    keys: SigningKeyRepository
    dlq: DlqRepository
    # Caps on the requests that make runs outside the plan, shared by every API replica.
    run_now_limit: RateLimiter
    replay_limit: RateLimiter


async def get_services(request: Request) -> Services:
    # Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread, a hand-off on every request.
    services: Services = request.app.state.services
    return services


Deps = Annotated[Services, Depends(get_services)]
