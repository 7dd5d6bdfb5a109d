"""Bulk pause, resume and delete by selector, against the real Postgres, with the events read back from Kafka."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.api.app import create_app
from shared.events import ScheduleDeleted, ScheduleUpserted, decode_event
from shared.settings import Settings
from shared.topics import SCHEDULES, topic_name
from tests.integration.helpers import auth, read_records, schedule_body


async def create_many(
    client: httpx.AsyncClient, settings: Settings, tenant: str, count: int, **overrides: Any
) -> list[str]:
    ids = []
    for _ in range(count):
        response = await client.post("/api/schedules", json=schedule_body(**overrides), headers=auth(settings, tenant))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def bulk(
    client: httpx.AsyncClient, settings: Settings, tenant: str, body: dict[str, Any], **auth_args: Any
) -> httpx.Response:
    return await client.post("/api/schedules/bulk", json=body, headers=auth(settings, tenant, **auth_args))


async def statuses(client: httpx.AsyncClient, settings: Settings, tenant: str, ids: list[str]) -> dict[str, Any]:
    out = {}
    for schedule_id in ids:
        response = await client.get(f"/api/schedules/{schedule_id}", headers=auth(settings, tenant))
        found = response.status_code == 200
        out[schedule_id] = (response.json()["status"], response.json()["version"]) if found else 404
    return out


async def test_pause_resume_delete_by_label_change_only_what_matches(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    team = f"team-{uuid.uuid4().hex[:6]}"
    billing = await create_many(client, settings, tenant, 6, labels={"team": team, "tier": "gold"})
    other = await create_many(client, settings, tenant, 3, labels={"team": f"{team}-other"})

    dry = await bulk(
        client, settings, tenant, {"action": "pause", "selector": {"labels": {"team": team}}, "dry_run": True}
    )
    assert dry.status_code == 200, dry.text
    assert dry.json() == {"matched": 6, "changed": 0}
    assert set((await statuses(client, settings, tenant, billing)).values()) == {("active", 1)}

    # One is paused already: it matches, but the pause does not change it again.
    single = await client.post(f"/api/schedules/{billing[0]}/pause", headers=auth(settings, tenant))
    assert single.status_code == 200
    paused = await bulk(
        client, settings, tenant, {"action": "pause", "selector": {"labels": {"team": team, "tier": None}}}
    )
    assert paused.json() == {"matched": 6, "changed": 5}
    after = await statuses(client, settings, tenant, billing)
    assert set(after.values()) == {("paused", 2)}
    assert set((await statuses(client, settings, tenant, other)).values()) == {("active", 1)}

    listed = await client.get(
        "/api/schedules", params={"label": f"team={team}", "status": "paused"}, headers=auth(settings, tenant)
    )
    assert {s["id"] for s in listed.json()["items"]} == set(billing)

    resumed = await bulk(client, settings, tenant, {"action": "resume", "selector": {"ids": billing[:3]}})
    assert resumed.json() == {"matched": 3, "changed": 3}
    assert set((await statuses(client, settings, tenant, billing[:3])).values()) == {("active", 3)}

    deleted = await bulk(
        client, settings, tenant, {"action": "delete", "selector": {"labels": {"team": team}, "status": "paused"}}
    )
    assert deleted.json() == {"matched": 3, "changed": 3}
    assert set((await statuses(client, settings, tenant, billing[3:])).values()) == {404}

    # Every change is an ordinary versioned change on chime.schedules, keyed by the schedule.
    records = await read_records(settings, topic_name(settings, SCHEDULES), keys=billing, count=6 + 1 + 5 + 3 + 3)
    events = [decode_event(r.value) for r in records if r.value is not None]
    by_id: dict[str, list[tuple[str, int]]] = {}
    for event in events:
        if isinstance(event, ScheduleUpserted):
            by_id.setdefault(str(event.data.id), []).append((event.data.status.value, event.data.version))
        elif isinstance(event, ScheduleDeleted):
            by_id.setdefault(str(event.data.id), []).append(("deleted", event.data.version))
    assert by_id[billing[0]] == [("active", 1), ("paused", 2), ("active", 3)]
    assert by_id[billing[5]] == [("active", 1), ("paused", 2), ("deleted", 3)]


async def test_another_tenants_schedules_are_never_matched(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    label = {"owner": uuid.uuid4().hex}
    mine = await create_many(client, settings, tenant, 2, labels=label)
    theirs = await create_many(client, settings, f"{tenant}-b", 2, labels=label)
    response = await bulk(client, settings, tenant, {"action": "pause", "selector": {"ids": mine + theirs}})
    assert response.json() == {"matched": 2, "changed": 2}
    assert set((await statuses(client, settings, f"{tenant}-b", theirs)).values()) == {("active", 1)}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"action": "pause", "selector": {}}, "selector"),
        ({"action": "pause", "selector": {"labels": {}, "ids": None}}, "selector"),
        ({"action": "archive", "selector": {"name_prefix": "x"}}, "action"),
        ({"action": "pause", "selector": {"status": "deleted"}}, "selector"),
        ({"action": "pause", "selector": {"colour": "red"}}, "selector.colour"),
        ({"action": "pause", "selector": {"ids": ["not-a-uuid"]}}, "selector.ids.0"),
    ],
)
async def test_bad_requests_are_422_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, tenant: str, body: dict[str, Any], field: str
) -> None:
    response = await bulk(client, settings, tenant, body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


async def test_writing_needs_the_write_scope(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    response = await bulk(
        client, settings, tenant, {"action": "pause", "selector": {"name_prefix": "x"}}, scope="schedules:read"
    )
    assert response.status_code == 403


@pytest.fixture
async def narrow_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An API over the same database that lets one bulk operation change at most 3 schedules."""
    app: FastAPI = create_app(settings.model_copy(update={"bulk_max": 3}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as c:
            yield c


async def test_more_matches_than_the_limit_is_422_and_changes_nothing(
    narrow_client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    prefix = f"wide-{uuid.uuid4().hex[:6]}-"
    ids = []
    for i in range(4):
        ids += await create_many(narrow_client, settings, tenant, 1, name=f"{prefix}{i}")
    response = await bulk(narrow_client, settings, tenant, {"action": "delete", "selector": {"name_prefix": prefix}})
    assert response.status_code == 422
    assert "CHIME_BULK_MAX" in response.json()["errors"][0]["message"]
    assert set((await statuses(narrow_client, settings, tenant, ids)).values()) == {("active", 1)}
    narrower = await bulk(
        narrow_client, settings, tenant, {"action": "delete", "selector": {"name_prefix": f"{prefix}1"}}
    )
    assert narrower.json() == {"matched": 1, "changed": 1}
