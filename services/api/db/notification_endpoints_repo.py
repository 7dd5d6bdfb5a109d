"""A tenant's notification endpoints in Postgres; the notifications waiting for them are in ``notifications``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.db.schedules_repo import check_if_match, decode_cursor, encode_cursor
from services.api.errors import NotificationEndpointNotFound
from services.api.models import NotificationEndpointIn, NotificationEndpointOut
from shared.db.tables import notification_endpoints
from shared.runid import new_entity_id
from shared.timefmt import utcnow


def _out(row: Row[Any]) -> NotificationEndpointOut:
    return NotificationEndpointOut(
        id=row.id,
        url=row.url,
        events=row.events,
        description=row.description,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _values(body: NotificationEndpointIn) -> dict[str, Any]:
    return {"url": body.url, "events": [e.value for e in body.events], "description": body.description}


async def _row(conn: AsyncConnection, tenant: str, endpoint_id: uuid.UUID, *, for_update: bool = False) -> Row[Any]:
    """The tenant's endpoint; another tenant's answers exactly like a missing one."""
    query = select(notification_endpoints).where(
        notification_endpoints.c.id == endpoint_id, notification_endpoints.c.tenant_id == tenant
    )
    row = (await conn.execute(query.with_for_update() if for_update else query)).first()
    if row is None:
        raise NotificationEndpointNotFound(f"no notification endpoint {endpoint_id}")
    return row


class NotificationEndpointRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, tenant: str, body: NotificationEndpointIn) -> NotificationEndpointOut:
        now = utcnow()
        endpoint_id = new_entity_id()
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(notification_endpoints).values(
                    id=endpoint_id, tenant_id=tenant, version=1, created_at=now, updated_at=now, **_values(body)
                )
            )
            return _out(await _row(conn, tenant, endpoint_id))

    async def get(self, tenant: str, endpoint_id: uuid.UUID) -> NotificationEndpointOut:
        async with self._engine.connect() as conn:
            return _out(await _row(conn, tenant, endpoint_id))

    async def list(
        self, tenant: str, *, limit: int, cursor: str | None
    ) -> tuple[list[NotificationEndpointOut], str | None]:
        query = select(notification_endpoints).where(notification_endpoints.c.tenant_id == tenant)
        if cursor is not None:
            query = query.where(notification_endpoints.c.id > uuid.UUID(decode_cursor(cursor)))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query.order_by(notification_endpoints.c.id).limit(limit + 1))).all()
        items = [_out(r) for r in rows[:limit]]
        return items, encode_cursor(str(items[-1].id)) if len(rows) > limit else None

    async def replace(
        self, tenant: str, endpoint_id: uuid.UUID, body: NotificationEndpointIn, *, if_match: str | None
    ) -> NotificationEndpointOut:
        """Change the endpoint; notifications already waiting go to its new URL."""
        async with self._engine.begin() as conn:
            row = await _row(conn, tenant, endpoint_id, for_update=True)
            check_if_match(if_match, row.version, "notification endpoint")
            await conn.execute(
                update(notification_endpoints)
                .where(notification_endpoints.c.id == endpoint_id)
                .values(version=row.version + 1, updated_at=utcnow(), **_values(body))
            )
            return _out(await _row(conn, tenant, endpoint_id))

    async def delete(self, tenant: str, endpoint_id: uuid.UUID, *, if_match: str | None) -> None:
        """Remove the endpoint and the notifications still waiting for it."""
        async with self._engine.begin() as conn:
            row = await _row(conn, tenant, endpoint_id, for_update=True)
            check_if_match(if_match, row.version, "notification endpoint")
            await conn.execute(delete(notification_endpoints).where(notification_endpoints.c.id == endpoint_id))
