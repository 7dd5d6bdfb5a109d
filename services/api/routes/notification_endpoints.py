"""``/api/notification-endpoints``: where a tenant hears about dead letters, skips, failing and auto-paused
schedules (signed CloudEvents, see ``services/api/notifier.py``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from services.api.auth import ReadSchedules, WriteSchedules
from services.api.deps import Deps
from services.api.models import NotificationEndpointIn, NotificationEndpointOut, Page
from services.api.problems import invalid_cursor
from services.api.targets import check_target

router = APIRouter(prefix="/api/notification-endpoints", tags=["notification endpoints"])

IfMatch = Annotated[str | None, Header(alias="If-Match")]


def _tagged(response: Response, endpoint: NotificationEndpointOut) -> NotificationEndpointOut:
    response.headers["ETag"] = f'"{endpoint.version}"'
    return endpoint


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NotificationEndpointOut)
async def create_notification_endpoint(
    body: NotificationEndpointIn, principal: WriteSchedules, deps: Deps, response: Response
) -> NotificationEndpointOut:
    await check_target(body.url, allow_private=deps.settings.allow_private_targets, field="url")
    endpoint = await deps.notification_endpoints.create(principal.tenant, body)
    response.headers["Location"] = f"/api/notification-endpoints/{endpoint.id}"
    return _tagged(response, endpoint)


@router.get("", response_model=Page[NotificationEndpointOut])
async def list_notification_endpoints(
    principal: ReadSchedules,
    deps: Deps,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Page[NotificationEndpointOut]:
    try:
        items, next_cursor = await deps.notification_endpoints.list(principal.tenant, limit=limit, cursor=cursor)
    except ValueError as exc:
        raise invalid_cursor() from exc
    return Page[NotificationEndpointOut](items=items, next_cursor=next_cursor)


@router.get("/{endpoint_id}", response_model=NotificationEndpointOut)
async def get_notification_endpoint(
    endpoint_id: uuid.UUID, principal: ReadSchedules, deps: Deps, response: Response
) -> NotificationEndpointOut:
    return _tagged(response, await deps.notification_endpoints.get(principal.tenant, endpoint_id))


@router.put("/{endpoint_id}", response_model=NotificationEndpointOut)
async def replace_notification_endpoint(
    endpoint_id: uuid.UUID,
    body: NotificationEndpointIn,
    principal: WriteSchedules,
    deps: Deps,
    response: Response,
    if_match: IfMatch = None,
) -> NotificationEndpointOut:
    await check_target(body.url, allow_private=deps.settings.allow_private_targets, field="url")
    endpoint = await deps.notification_endpoints.replace(principal.tenant, endpoint_id, body, if_match=if_match)
    return _tagged(response, endpoint)


@router.delete("/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_notification_endpoint(
    endpoint_id: uuid.UUID, principal: WriteSchedules, deps: Deps, if_match: IfMatch = None
) -> Response:
    """Delete the endpoint; notifications still waiting for it are dropped."""
    await deps.notification_endpoints.delete(principal.tenant, endpoint_id, if_match=if_match)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
