"""The overview: deliveries per minute, failure rate, lag, dead letters waiting, and (for operators) consumer lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response

from services.api.auth import ADMIN
from services.api.console.charts import Series, bars, lines
from services.api.console.pages import ConsolePage

router = APIRouter(prefix="/ui", include_in_schema=False)

_WINDOW_MINUTES = 60


def _minutes(series: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any] | None]]:
    """Every minute of the window (UTC), oldest first, with the API's figures where that minute had runs."""
    by_minute = {datetime.fromisoformat(item["minute"]).astimezone(UTC): item for item in series}
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    minutes = [end - timedelta(minutes=n) for n in range(_WINDOW_MINUTES - 1, -1, -1)]
    return [m.strftime("%H:%M") for m in minutes], [by_minute.get(m) for m in minutes]


@router.get("/")
async def overview(page: ConsolePage) -> Response:
    # Consumer lag is the installation's figure, shown to operators (the admin scope) only.
    operator = ADMIN in page.session.principal.scopes
    params: dict[str, Any] = {"window_minutes": _WINDOW_MINUTES, "consumer_lag": "true" if operator else "false"}
    stats = await page.get("/api/stats", params)
    labels, figures = _minutes(stats["series"])
    succeeded = [float(f["succeeded"]) if f else 0.0 for f in figures]
    failed = [float(f["failed"]) if f else 0.0 for f in figures]
    total_ok, total_failed = sum(succeeded), sum(failed)
    finished = total_ok + total_failed
    failure_rate = [(f / (s + f) * 100) if (s + f) else None for s, f in zip(succeeded, failed, strict=True)]
    p50 = [f["lag_p50_ms"] if f else None for f in figures]
    p99 = [f["lag_p99_ms"] if f else None for f in figures]
    charts = {
        "deliveries": bars(
            "Deliveries per minute",
            "runs",
            labels,
            [Series("succeeded", succeeded, "ok"), Series("failed", failed, "bad")],
        ),
        "failure_rate": lines("Failure rate per minute", "%", labels, [Series("failed", failure_rate, "bad")]),
        "lag": lines("Lag p50 and p99", "ms", labels, [Series("p50", p50, "p50"), Series("p99", p99, "p99")]),
    }
    recent = [f for f in figures if f][-5:]
    return page.render(
        "overview.html",
        charts=charts,
        totals={
            "succeeded": int(total_ok),
            "failed": int(total_failed),
            "failure_rate": f"{total_failed / finished * 100:.1f}%" if finished else "–",
            "lag_p99": f"{max(f['lag_p99_ms'] or 0 for f in recent):.0f} ms" if recent else "–",
        },
        dead_letters=stats["dead_letters"],
        operator=operator,
        consumer_lag=stats["consumer_lag"],
        rows=[(label, f) for label, f in zip(labels, figures, strict=True) if f],
        title="Overview",
    )
