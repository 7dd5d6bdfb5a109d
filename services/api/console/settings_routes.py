"""The tenant's settings: calendars, notification endpoints, flow limits and signing keys."""

from __future__ import annotations

import uuid
from urllib.parse import quote

from fastapi import APIRouter
from fastapi.responses import Response

from services.api.console.client import ApiResult
from services.api.console.forms import (
    CHOICES,
    calendar_body,
    calendar_form,
    endpoint_body,
    flow_limit_body,
)
from services.api.console.pages import ConsolePage, Refused, if_match, redirect

router = APIRouter(prefix="/ui", include_in_schema=False)


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
    sent = await page.submit("POST", "/api/calendars", form, calendar_body)
    if isinstance(sent, Refused):
        context = {"values": form, "errors": sent.errors, "choices": CHOICES, "calendar": None}
        return page.render("calendar_form.html", sent.status, title="New calendar", **context)
    return redirect("/ui/calendars", "created")


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
    path = f"/api/calendars/{calendar_id}"
    sent = await page.submit("PUT", path, form, calendar_body, if_match(form))
    if isinstance(sent, Refused):
        found = await page.get(path)
        context = {"values": form, "errors": sent.errors, "choices": CHOICES, "calendar": found}
        return page.render("calendar_form.html", sent.status, title=found["name"], **context)
    return redirect("/ui/calendars", "saved")


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
    sent = await page.submit("POST", "/api/notification-endpoints", form, endpoint_body)
    if isinstance(sent, Refused):
        context = {"values": form, "errors": sent.errors, "choices": CHOICES, "endpoint": None}
        return page.render("endpoint_form.html", sent.status, title="New endpoint", **context)
    return redirect("/ui/notifications", "created")


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
    path = f"/api/notification-endpoints/{endpoint_id}"
    sent = await page.submit("PUT", path, form, endpoint_body, if_match(form))
    if isinstance(sent, Refused):
        context = {"values": form, "errors": sent.errors, "choices": CHOICES, "endpoint": await page.get(path)}
        return page.render("endpoint_form.html", sent.status, title="Notification endpoint", **context)
    return redirect("/ui/notifications", "saved")


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
    if flow_key:
        sent: ApiResult | Refused = await page.submit(
            "PUT", f"/api/flow-limits/{quote(flow_key, safe='')}", form, flow_limit_body
        )
    else:
        sent = Refused(422, {"flow_key": "name the flow: a schedule's flow key, or the host (and port) of its URL"})
    if isinstance(sent, Refused):
        listed = await page.get("/api/flow-limits", {"limit": 200})
        context = {"items": listed["items"], "values": form, "errors": sent.errors, "choices": CHOICES}
        return page.render("flow_limits.html", sent.status, title="Flow limits", **context)
    return redirect("/ui/flow-limits", "saved")


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
