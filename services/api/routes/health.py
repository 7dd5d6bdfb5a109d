"""``/health``, ``/health/detailed`` and ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from services.api.deps import Deps
from services.api.metrics import ApiMetrics
from services.api.models import HealthCheck, HealthOut
from services.api.outbox import backlog
from shared.health import check_all

router = APIRouter(tags=["operations"])

# An outbox row older than this means the relay is stuck (Kafka unreachable or the relay failing).
_OUTBOX_STALE_S = 30.0


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    return HealthOut(status="ok")


@router.get("/health/detailed", response_model=HealthOut)
async def health_detailed(request: Request, deps: Deps) -> JSONResponse:
    async def db() -> str:
        async with deps.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return "connected"

    async def kafka() -> str:
        answer = await request.app.state.kafka_probe.check()
        if deps.relay.last_error:
            raise ConnectionError(f"brokers answer but the relay fails: {deps.relay.last_error}")
        return str(answer)

    async def outbox() -> str:
        async with deps.engine.connect() as conn:
            count, oldest = await backlog(conn)
        if oldest > _OUTBOX_STALE_S:
            raise RuntimeError(f"{count} unpublished, oldest {oldest:.1f}s")
        return f"{count} unpublished, oldest {oldest:.1f}s"

    results = await check_all({"database": db, "kafka": kafka, "outbox": outbox})
    checks = {name: HealthCheck(**result.model_dump()) for name, result in results.items()}
    overall = "ok" if all(c.status == "ok" for c in checks.values()) else "degraded"
    body = HealthOut(status=overall, checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if overall == "ok" else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, deps: Deps) -> Response:
    m: ApiMetrics = request.app.state.metrics
    for status, count in (await deps.schedules.counts_by_status()).items():
        m.schedules.labels(status).set(count)
    figures = await deps.runs.history_figures()
    for name, value in figures.items():
        if name.startswith("runs:"):
            m.runs.labels(name.removeprefix("runs:")).set(value)
    finished = figures.get("attempts:finished", 0.0)
    m.success_rate.set(figures.get("attempts:succeeded", 0.0) / finished if finished else 0.0)
    m.avg_duration.set(figures.get("attempts:duration_ms", 0.0) / finished / 1000 if finished else 0.0)
    async with deps.engine.connect() as conn:
        count, oldest = await backlog(conn)
    m.outbox_backlog.set(count)
    m.outbox_oldest.set(oldest)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
