"""The tenant's settings: calendars, notification endpoints, flow limits and signing keys."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response

from services.api.console.client import ApiProblem
from services.api.console.forms import (
    CHOICES,
    FormErrors,
    calendar_body,
    calendar_form,
    endpoint_body,
    flow_limit_body,
)
from services.api.console.pages import ConsolePage, Page, redirect

router = APIRouter(prefix="/ui", include_in_schema=False)


async def _save(
    page: Page,
    form: dict[str, Any],
    to_body: Callable[[dict[str, Any]], dict[str, Any]],
    method: str,
    path: str,
    template: str,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response | None:
    """Send the form to the API; on a 422 (the form's or the API's), the form again with each field's message."""
    try:
        await page.send(method, path, json=to_body(form), headers=headers)
    except FormErrors as exc:
        return page.render(template, 422, values=form, errors=exc.errors, choices=CHOICES, **context)
    except ApiProblem as exc:
        if exc.status == 412:
            errors = {"": "This was changed meanwhile; reload the page to edit the current version."}
            return page.render(template, 412, values=form, errors=errors, choices=CHOICES, **context)
        if exc.status != 422:
            raise
        return page.render(template, 422, values=form, errors=exc.field_errors(), choices=CHOICES, **context)
    return None


# Calendars


@router.get("/calendars")
async def calendars(page: ConsolePage) -> Response:
    listed = await page.get("/api/calendars", {"limit": 200})
    return page.render("calendars.html", items=listed["items"], title="Calendars")


@router.get("/calendars/new")
async def new_calendar(page: ConsolePage) -> Response:
    values = {"timezone": "UTC", "exclude_weekdays": []}
    return page.render(
        "calendar_form.html", values=values, errors={}, choices=CHOICES, calendar=None, title="New calendar"
    )


@router.post("/calendars/new")
async def create_calendar(page: ConsolePage) -> Response:
    form = await page.form()
    failed = await _save(
        page, form, calendar_body, "POST", "/api/calendars", "calendar_form.html", calendar=None, title="New calendar"
    )
    return failed or redirect("/ui/calendars", "created")


@router.get("/calendars/{calendar_id}")
async def edit_calendar(page: ConsolePage, calendar_id: uuid.UUID) -> Response:
    found = await page.get(f"/api/calendars/{calendar_id}")
    values = calendar_form(found)
    return page.render(
        "calendar_form.html", values=values, errors={}, choices=CHOICES, calendar=found, title=found["name"]
    )


@router.post("/calendars/{calendar_id}")
async def save_calendar(page: ConsolePage, calendar_id: uuid.UUID) -> Response:
    form = await page.form()
    found = await page.get(f"/api/calendars/{calendar_id}")
    headers = {"If-Match": f'"{form.get("version", "")}"'}
    path = f"/api/calendars/{calendar_id}"
    failed = await _save(
        page, form, calendar_body, "PUT", path, "calendar_form.html", headers, calendar=found, title=found["name"]
    )
    return failed or redirect("/ui/calendars", "saved")


@router.post("/calendars/{calendar_id}/delete")
async def delete_calendar(page: ConsolePage, calendar_id: uuid.UUID) -> Response:
    return await page.act("DELETE", f"/api/calendars/{calendar_id}", "/ui/calendars", "deleted")


# Notification endpoints


@router.get("/notifications")
async def endpoints(page: ConsolePage) -> Response:
    listed = await page.get("/api/notification-endpoints", {"limit": 200})
    return page.render("endpoints.html", items=listed["items"], title="Notification endpoints")


@router.get("/notifications/new")
async def new_endpoint(page: ConsolePage) -> Response:
    values = {"events": ["schedule.failing", "schedule.recovered", "schedule.auto_paused"]}
    return page.render(
        "endpoint_form.html", values=values, errors={}, choices=CHOICES, endpoint=None, title="New endpoint"
    )


@router.post("/notifications/new")
async def create_endpoint(page: ConsolePage) -> Response:
    form = await page.form()
    path = "/api/notification-endpoints"
    failed = await _save(
        page, form, endpoint_body, "POST", path, "endpoint_form.html", endpoint=None, title="New endpoint"
    )
    return failed or redirect("/ui/notifications", "created")


@router.get("/notifications/{endpoint_id}")
async def edit_endpoint(page: ConsolePage, endpoint_id: uuid.UUID) -> Response:
    found = await page.get(f"/api/notification-endpoints/{endpoint_id}")
    values = {"url": found["url"], "events": found["events"], "description": found.get("description") or ""}
    return page.render(
        "endpoint_form.html", values=values, errors={}, choices=CHOICES, endpoint=found, title="Notification endpoint"
    )


@router.post("/notifications/{endpoint_id}")
async def save_endpoint(page: ConsolePage, endpoint_id: uuid.UUID) -> Response:
    form = await page.form()
    found = await page.get(f"/api/notification-endpoints/{endpoint_id}")
    path = f"/api/notification-endpoints/{endpoint_id}"
    failed = await _save(
        page, form, endpoint_body, "PUT", path, "endpoint_form.html", endpoint=found, title="Notification endpoint"
    )
    return failed or redirect("/ui/notifications", "saved")


@router.post("/notifications/{endpoint_id}/delete")
async def delete_endpoint(page: ConsolePage, endpoint_id: uuid.UUID) -> Response:
    return await page.act("DELETE", f"/api/notification-endpoints/{endpoint_id}", "/ui/notifications", "deleted")


# Flow limits


@router.get("/flow-limits")
async def flow_limits(page: ConsolePage) -> Response:
    listed = await page.get("/api/flow-limits", {"limit": 200})
    return page.render(
        "flow_limits.html", items=listed["items"], values={}, errors={}, choices=CHOICES, title="Flow limits"
    )


@router.post("/flow-limits")
async def save_flow_limit(page: ConsolePage) -> Response:
    form = await page.form()
    flow_key = str(form.get("flow_key", "")).strip()
    if not flow_key:
        listed = await page.get("/api/flow-limits", {"limit": 200})
        errors = {"flow_key": "name the flow: a schedule's flow key, or the host (and port) of its URL"}
        return page.render(
            "flow_limits.html",
            422,
            items=listed["items"],
            values=form,
            errors=errors,
            choices=CHOICES,
            title="Flow limits",
        )
    listed = await page.get("/api/flow-limits", {"limit": 200})
    path = f"/api/flow-limits/{quote(flow_key, safe='')}"
    failed = await _save(
        page, form, flow_limit_body, "PUT", path, "flow_limits.html", items=listed["items"], title="Flow limits"
    )
    return failed or redirect("/ui/flow-limits", "saved")


@router.post("/flow-limits/delete")
async def delete_flow_limit(page: ConsolePage) -> Response:
    form = await page.form()
    await page.send("DELETE", f"/api/flow-limits/{quote(str(form.get('flow_key', '')), safe='')}")
    return redirect("/ui/flow-limits", "deleted")


# Signing keys


@router.get("/signing-keys")
async def signing_keys(page: ConsolePage) -> Response:
    keys = await page.get("/api/signing-keys")
    return page.render("signing_keys.html", items=keys["items"], title="Signing keys")


@router.post("/signing-keys/rotate")
async def rotate(page: ConsolePage) -> Response:
    return await page.act("POST", "/api/signing-keys/rotate", "/ui/signing-keys", "rotated")
