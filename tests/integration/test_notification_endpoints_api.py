"""Notification endpoints through the API against the real Postgres: CRUD with ETags, validation, tenancy and the
SSRF rules schedule targets follow."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from shared.settings import Settings
from tests.integration.helpers import auth
from tests.integration.test_auth_and_limits import api_with


def endpoint_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"url": "https://ops.example.com/hook", "events": ["schedule.failing"]}
    body.update(overrides)
    return body


async def test_crud_with_etags_and_tenancy(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    headers = auth(settings, tenant)
    created = await client.post(
        "/api/notification-endpoints",
        json=endpoint_body(events=["schedule.recovered", "run.dead_lettered"], description="pager"),
        headers=headers,
    )
    assert created.status_code == 201, created.text
    endpoint = created.json()
    url = f"/api/notification-endpoints/{endpoint['id']}"
    assert created.headers["Location"] == url and created.headers["ETag"] == '"1"'
    assert endpoint["events"] == ["run.dead_lettered", "schedule.recovered"] and endpoint["description"] == "pager"

    listed = await client.get("/api/notification-endpoints", headers=headers)
    assert [e["id"] for e in listed.json()["items"]] == [endpoint["id"]]
    stale = await client.put(url, json=endpoint_body(), headers={**headers, "If-Match": '"9"'})
    assert stale.status_code == 412
    replaced = await client.put(
        url, json=endpoint_body(url="https://ops.example.com/v2"), headers={**headers, "If-Match": '"1"'}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["version"] == 2 and replaced.json()["url"] == "https://ops.example.com/v2"

    other = auth(settings, f"{tenant}-other")
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.put(url, json=endpoint_body(), headers=other)).status_code == 404
    assert (await client.delete(url, headers=other)).status_code == 404
    assert (await client.get("/api/notification-endpoints", headers=other)).json()["items"] == []

    assert (await client.delete(url, headers=headers)).status_code == 204
    missing = await client.get(url, headers=headers)
    assert missing.status_code == 404 and missing.json()["type"].endswith("/notification-endpoint-not-found")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"url": "ftp://ops.example.com/hook"}, "url"),
        ({"url": "https://user:pw@ops.example.com/hook"}, "url"),
        ({"events": []}, "events"),
        ({"events": ["schedule.exploded"]}, "events.0"),
        ({"events": ["run.skipped", "run.skipped"]}, "events"),
        ({"description": "x" * 501}, "description"),
        ({"secret": "mine"}, "secret"),
    ],
)
async def test_invalid_endpoints_are_422_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, tenant: str, overrides: dict[str, Any], field: str
) -> None:
    response = await client.post(
        "/api/notification-endpoints", json=endpoint_body(**overrides), headers=auth(settings, tenant)
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize("url", ["http://10.0.0.5/hook", "http://localhost:8080/hook", "http://169.254.169.254/"])
async def test_private_endpoints_are_refused_when_not_allowed(settings: Settings, tenant: str, url: str) -> None:
    async with api_with(settings, allow_private_targets=False) as client:
        response = await client.post(
            "/api/notification-endpoints", json=endpoint_body(url=url), headers=auth(settings, tenant)
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "url"


async def test_changing_endpoints_needs_write_scope(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    reader = auth(settings, tenant, scope="schedules:read")
    assert (await client.get("/api/notification-endpoints", headers=reader)).status_code == 200
    denied = await client.post("/api/notification-endpoints", json=endpoint_body(), headers=reader)
    assert denied.status_code == 403
