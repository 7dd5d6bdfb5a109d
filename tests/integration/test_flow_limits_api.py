"""Flow limits through the API against the real Postgres: CRUD, validation, tenancy, and the records executors
read from the real ``chime.flow-limits`` topic (versions that keep growing across a delete)."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import httpx
import pytest

from services.executor.flows import FlowLimit, FlowLimits
from shared.events.flow import flow_record_key
from shared.settings import Settings
from shared.topics import FLOW_LIMITS, topic_name
from tests.integration.helpers import auth, read_records, schedule_body


async def test_crud_with_etags_tenancy_and_the_topic(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    flow = f"receiver-{uuid.uuid4().hex[:6]}.example.com:8443"
    url = f"/api/flow-limits/{flow}"
    headers = auth(settings, tenant)
    assert (await client.get(url, headers=headers)).status_code == 404

    created = await client.put(url, json={"max_concurrency": 5, "max_per_second": 20}, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["flow_key"] == flow and created.json()["version"] == 1
    assert created.headers["ETag"] == '"1"'
    default = await client.put(url, json={"max_per_second": 2.5}, headers={**headers, "If-Match": '"1"'})
    assert default.status_code == 200, default.text
    assert default.json()["max_concurrency"] == settings.default_flow_concurrency
    assert default.json()["max_per_second"] == 2.5 and default.json()["version"] == 2
    stale = await client.put(url, json={"max_concurrency": 1}, headers={**headers, "If-Match": '"1"'})
    assert stale.status_code == 412

    listed = await client.get("/api/flow-limits", params={"limit": 500}, headers=headers)
    assert [f["flow_key"] for f in listed.json()["items"]] == [flow]

    other = auth(settings, f"{tenant}-other")
    assert (await client.get(url, headers=other)).status_code == 404
    assert (await client.delete(url, headers=other)).status_code == 404
    assert (await client.get("/api/flow-limits", headers=other)).json()["items"] == []

    assert (await client.delete(url, headers=headers)).status_code == 204
    assert (await client.get(url, headers=headers)).status_code == 404
    assert (await client.delete(url, headers=headers)).status_code == 404
    again = await client.put(url, json={"max_concurrency": 7}, headers=headers)
    assert again.status_code == 201 and again.json()["version"] == 4

    # What executors see: every version in order, the delete included, and a view that ends on the latest.
    key = flow_record_key(tenant, flow).decode()
    await client.post("/api/schedules", json=schedule_body(), headers=headers)  # wakes the relay, like any change
    records = await read_records(settings, topic_name(settings, FLOW_LIMITS), keys=[key], count=4)
    view = FlowLimits(settings)
    for record in records:
        assert view._apply(record.key, record.value) is None
    assert view.get(tenant, flow) == FlowLimit(7, None)
    assert len(records) == 4


async def test_flow_keys_with_slashes_and_the_default_host(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    headers = auth(settings, tenant)
    flow = "billing/exports v2"
    response = await client.put(f"/api/flow-limits/{quote(flow)}", json={"max_concurrency": 2}, headers=headers)
    assert response.status_code == 201, response.text
    got = await client.get(f"/api/flow-limits/{quote(flow, safe='')}", headers=headers)
    assert got.status_code == 200 and got.json()["flow_key"] == flow
    body = schedule_body(payload={"url": "https://example.com/hook", "flow_key": flow})
    created = await client.post("/api/schedules", json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["payload"]["flow_key"] == flow


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_per_second": 0}, "max_per_second"),
        ({"max_per_second": -1.5}, "max_per_second"),
        ({"max_concurrency": "many"}, "max_concurrency"),
        ({"burst": 3}, "burst"),
    ],
)
async def test_invalid_limits_are_422_naming_the_field(
    client: httpx.AsyncClient, settings: Settings, tenant: str, body: dict[str, object], field: str
) -> None:
    response = await client.put("/api/flow-limits/example.com", json=body, headers=auth(settings, tenant))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == field


async def test_a_too_long_flow_key_is_422(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    headers = auth(settings, tenant)
    response = await client.put(f"/api/flow-limits/{'x' * 201}", json={"max_concurrency": 1}, headers=headers)
    assert response.status_code == 422
    payload = {"url": "https://example.com/hook", "flow_key": "y" * 201}
    schedule = await client.post("/api/schedules", json=schedule_body(payload=payload), headers=headers)
    assert schedule.status_code == 422 and schedule.json()["errors"][0]["field"] == "payload.flow_key"


async def test_reading_needs_read_scope_and_changing_needs_write(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    reader = auth(settings, tenant, scope="schedules:read")
    assert (await client.get("/api/flow-limits", headers=reader)).status_code == 200
    denied = await client.put("/api/flow-limits/example.com", json={"max_concurrency": 1}, headers=reader)
    assert denied.status_code == 403
