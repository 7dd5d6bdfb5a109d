"""``/api/flow-limits``: how hard the executors may call one receiver (a flow), across all of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from services.api.auth import ReadSchedules, WriteSchedules
from services.api.db.flow_limits_repo import FlowLimitRecord
from services.api.deps import Deps
from services.api.models import FlowLimitIn, FlowLimitOut, Page
from services.api.problems import invalid_cursor
from shared.events.schedule import FLOW_KEY_MAX

router = APIRouter(prefix="/api/flow-limits", tags=["flow limits"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]
# ``path``: a flow key may hold a slash (an explicit payload.flow_key), which a plain segment would split on.
FlowKey = Annotated[
    str,
    Path(
        min_length=1,
        max_length=FLOW_KEY_MAX,
        description="payload.flow_key, or the URL's host with its port (``api.example.com``, ``10.0.0.5:8443``)",
    ),
]


def _out(response: Response | None, record: FlowLimitRecord) -> FlowLimitOut:
    if response is not None:
        response.headers["ETag"] = f'"{record.version}"'
    return FlowLimitOut(
        flow_key=record.flow_key,
        max_concurrency=record.max_concurrency,
        max_per_second=record.max_per_second,
        version=record.version,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


@router.get("", response_model=Page[FlowLimitOut])
async def list_flow_limits(
    principal: ReadSchedules,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> Page[FlowLimitOut]:
    try:
        records, next_cursor = await deps.flow_limits.list(principal.tenant, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid_cursor() from exc
    return Page[FlowLimitOut](items=[_out(None, r) for r in records], next_cursor=next_cursor)


@router.get("/{flow_key:path}", response_model=FlowLimitOut)
async def get_flow_limit(flow_key: FlowKey, principal: ReadSchedules, deps: Deps, response: Response) -> FlowLimitOut:
    return _out(response, await deps.flow_limits.get(principal.tenant, flow_key))


@router.put(
    "/{flow_key:path}",
    response_model=FlowLimitOut,
    responses={201: {"model": FlowLimitOut, "description": "The flow had no limit of its own before"}},
)
async def put_flow_limit(
    flow_key: FlowKey,
    body: FlowLimitIn,
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> FlowLimitOut:
    """Set the flow's limits. Executors apply them to calls not yet started, within moments."""
    record, created = await deps.flow_limits.put(
        principal.tenant,
        flow_key,
        max_concurrency=body.max_concurrency,
        max_per_second=body.max_per_second,
        if_match=if_match,
    )
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _out(response, record)


@router.delete("/{flow_key:path}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_flow_limit(
    flow_key: FlowKey, principal: WriteSchedules, deps: Deps, if_match: IfMatch = None
) -> Response:
    """Remove the flow's limits: it falls back to CHIME_DEFAULT_FLOW_CONCURRENCY per executor."""
    await deps.flow_limits.delete(principal.tenant, flow_key, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
