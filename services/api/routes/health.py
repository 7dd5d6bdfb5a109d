"""``/health``, ``/health/detailed`` and ``/metrics``."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from services.api.deps import Deps
from services.api.metrics import ApiMetrics
from services.api.models import HealthCheck, HealthOut
from services.api.outbox import backlog

router = APIRouter(tags=["operations"])

_CHECK_TIMEOUT_S = 2.0
# An outbox row older than this means the relay is stuck (Kafka unreachable or the relay failing).
_OUTBOX_STALE_S = 30.0


@router.get("/health", response_model=HealthOut)
async def health() -> HealthOut:
    return HealthOut(status="ok")


async def _timed(check: asyncio.Future[str] | asyncio.Task[str]) -> HealthCheck:
    start = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check, timeout=_CHECK_TIMEOUT_S)
        return HealthCheck(status="ok", latency_ms=round((time.perf_counter() - start) * 1000, 2), detail=detail)
    except Exception as exc:  # noqa: BLE001 - every failure is reported as the check's status
        return HealthCheck(
            status="down",
            latency_ms=round((time.perf_counter() - start) * 1000, 2),
            detail=f"{type(exc).__name__}: {exc}",
        )


@router.get("/health/detailed", response_model=HealthOut)
async def health_detailed(deps: Deps) -> JSONResponse:
    async def db() -> str:
        async with deps.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return "connected"

    async def kafka() -> str:
        errors = []
        for server in deps.settings.kafka_bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
            except OSError as exc:
                errors.append(f"{server}: {exc}")
                continue
            writer.close()
            await writer.wait_closed()
            if deps.relay.last_error:
                raise ConnectionError(f"broker reachable but the relay fails: {deps.relay.last_error}")
            return f"{server} reachable"
        raise ConnectionError("; ".join(errors))

    async def outbox() -> str:
        async with deps.engine.connect() as conn:
            count, oldest = await backlog(conn)
        if oldest > _OUTBOX_STALE_S:
            raise RuntimeError(f"{count} unpublished, oldest {oldest:.1f}s")
        return f"{count} unpublished, oldest {oldest:.1f}s"

    checks = {
        "database": await _timed(asyncio.ensure_future(db())),
        "kafka": await _timed(asyncio.ensure_future(kafka())),
        "outbox": await _timed(asyncio.ensure_future(outbox())),
    }
    overall = "ok" if all(c.status == "ok" for c in checks.values()) else "degraded"
    body = HealthOut(status=overall, checks=checks)
    return JSONResponse(body.model_dump(mode="json"), status_code=200 if overall == "ok" else 503)


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request, deps: Deps) -> Response:
    m: ApiMetrics = request.app.state.metrics
    for status, count in (await deps.schedules.counts_by_status()).items():
        m.schedules.labels(status).set(count)
    for status, count in (await deps.runs.counts_by_status()).items():
        m.runs.labels(status).set(count)
    finished, succeeded, avg_ms = await deps.runs.attempt_stats()
    m.success_rate.set(succeeded / finished if finished else 0.0)
    m.avg_duration.set(avg_ms / 1000)
    async with deps.engine.connect() as conn:
        count, oldest = await backlog(conn)
    m.outbox_backlog.set(count)
    m.outbox_oldest.set(oldest)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
