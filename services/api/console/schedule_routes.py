"""Schedules: the list with filters and bulk actions, a schedule's page, the create and edit form, and runs."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response

from services.api.console.client import ApiProblem
from services.api.console.forms import CHOICES, FormErrors, schedule_body, schedule_form
from services.api.console.pages import ConsolePage, Page, Refused, if_match, redirect
from services.api.console.selectors import label_params, label_selector

router = APIRouter(prefix="/ui", include_in_schema=False)

_PAGE_SIZE = 25
_ACTIONS = {"pause": "paused", "resume": "resumed", "run-now": "run-now"}


@router.get("/schedules")
async def schedules(
    page: ConsolePage,
    status: Annotated[str | None, Query(max_length=20)] = None,
    label: Annotated[str | None, Query(max_length=1000)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    failing: Annotated[str | None, Query(max_length=5)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    changed: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    filters = {"status": status or "", "label": label or "", "name": name or "", "failing": bool(failing)}
    params: list[tuple[str, Any]] = [("limit", _PAGE_SIZE)]
    if status:
        params.append(("status", status))
    if name:
        params.append(("name", name))
    if failing:
        params.append(("failing", "true"))
    if cursor:
        params.append(("cursor", cursor))
    try:
        params += [("label", item) for item in label_params(label or "")]
        listed = await page.get("/api/schedules", params)
    except ValueError as exc:
        return page.render("schedules.html", 422, items=[], rates={}, filters=filters, error=str(exc), next_cursor=None)
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return page.render(
            "schedules.html", 422, items=[], rates={}, filters=filters, error=exc.detail, next_cursor=None
        )
    rates = await _success_rates(page, [s["id"] for s in listed["items"]])
    return page.render(
        "schedules.html",
        items=listed["items"],
        rates=rates,
        filters=filters,
        next_cursor=listed.get("next_cursor"),
        changed=changed,
        title="Schedules",
    )


async def _success_rates(page: Page, ids: list[str]) -> dict[str, str]:
    """Each schedule's share of successful runs over the last 24 hours, as the list shows it (none without the
    ``runs:read`` scope: the list itself needs only ``schedules:read``)."""
    if not ids:
        return {}
    try:
        stats = await page.get("/api/stats", [("window_minutes", 1440), *(("schedule_id", i) for i in ids)])
    except ApiProblem as exc:
        if exc.status != 403:
            raise
        return {}
    rates = {}
    for item in stats["schedules"]:
        total = item["succeeded"] + item["failed"]
        if total:
            rates[item["schedule_id"]] = f"{100 * item['succeeded'] / total:.0f}% of {total}"
    return rates


@router.post("/schedules/bulk")
async def bulk(page: ConsolePage) -> Response:
    """First a dry run, shown as a confirmation with the count; the confirmed form makes the change."""
    form = await page.form()
    action = str(form.get("action", ""))
    selector: dict[str, Any] = {}
    ids = form.get("ids") or []
    ids = ids if isinstance(ids, list) else [ids]
    if form.get("scope") == "selected":
        if not ids:
            return redirect("/ui/schedules", "none-selected")
        selector["ids"] = ids
    else:
        try:
            labels = label_selector(str(form.get("label", "")))
        except ValueError as exc:
            return page.render("confirm_bulk.html", 422, error=str(exc), form=form, matched=None, title="Bulk change")
        if labels:
            selector["labels"] = labels
        if form.get("status"):
            selector["status"] = form["status"]
        if form.get("name"):
            selector["name_prefix"] = form["name"]
    body = {"action": action, "selector": selector}
    try:
        if form.get("confirmed") != "yes":
            counted = await page.send("POST", "/api/schedules/bulk", json={**body, "dry_run": True})
            return page.render(
                "confirm_bulk.html", form=form, ids=ids, matched=counted.body["matched"], title="Confirm bulk change"
            )
        done = await page.send("POST", "/api/schedules/bulk", json=body)
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return page.render("confirm_bulk.html", 422, error=exc.detail, form=form, ids=ids, matched=None, title="Bulk")
    return redirect("/ui/schedules", "bulk", changed=str(done.body["changed"]))


@router.get("/schedules/new")
async def new_schedule(page: ConsolePage) -> Response:
    values: dict[str, Any] = {"type": "cron", "cron_expr": "*/5 * * * *", "timezone": "UTC", "payload.method": "POST"}
    return await _form_page(page, values, errors={}, schedule=None)


@router.post("/schedules/new")
async def create_schedule(page: ConsolePage) -> Response:
    form = await page.form()
    sent = await page.submit("POST", "/api/schedules", form, schedule_body)
    if isinstance(sent, Refused):
        return await _form_page(page, form, sent.errors, None, status_code=sent.status)
    return redirect(f"/ui/schedules/{sent.body['id']}", "created")


@router.post("/schedules/preview")
async def preview(page: ConsolePage) -> HTMLResponse:
    """The form's live preview: the next fire times of what the form holds now, or why there are none."""
    form = await page.form()
    try:
        body = schedule_body(form)
        # The preview needs a target to validate; the real one is checked when the form is saved.
        body["payload"]["url"] = body["payload"]["url"] or "https://example.com/"
        found = await page.send("POST", "/api/schedules/preview", json=body, params={"include_skipped": "true"})
    except FormErrors as exc:
        return page.render("preview_fragment.html", items=[], errors=exc.errors)
    except ApiProblem as exc:
        return page.render("preview_fragment.html", items=[], errors=exc.field_errors() or {"": exc.detail})
    return page.render("preview_fragment.html", items=found.body["items"], errors={})


async def _form_page(
    page: Page, values: dict[str, Any], errors: dict[str, str], schedule: dict[str, Any] | None, status_code: int = 200
) -> Response:
    calendars = await page.get("/api/calendars", {"limit": 200})
    return page.render(
        "schedule_form.html",
        status_code,
        values=values,
        errors=errors,
        schedule=schedule,
        choices=CHOICES,
        calendars=calendars["items"],
        title=f"Edit {schedule['name']}" if schedule else "New schedule",
    )


@router.get("/schedules/{schedule_id}")
async def schedule(page: ConsolePage, schedule_id: uuid.UUID) -> Response:
    found = await page.get(f"/api/schedules/{schedule_id}")
    upcoming = await page.get(f"/api/schedules/{schedule_id}/preview", {"count": 10, "include_skipped": "true"})
    runs = await page.get(f"/api/schedules/{schedule_id}/runs", {"limit": 10})
    return page.render(
        "schedule.html", schedule=found, upcoming=upcoming["items"], runs=runs["items"], title=found["name"]
    )


@router.get("/schedules/{schedule_id}/edit")
async def edit_schedule(page: ConsolePage, schedule_id: uuid.UUID) -> Response:
    found = await page.get(f"/api/schedules/{schedule_id}")
    return await _form_page(page, schedule_form(found), {}, found)


@router.post("/schedules/{schedule_id}/edit")
async def save_schedule(page: ConsolePage, schedule_id: uuid.UUID) -> Response:
    form = await page.form()
    path = f"/api/schedules/{schedule_id}"
    sent = await page.submit("PUT", path, form, schedule_body, if_match(form))
    if isinstance(sent, Refused):
        return await _form_page(page, form, sent.errors, await page.get(path), status_code=sent.status)
    return redirect(f"/ui/schedules/{schedule_id}", "saved")


@router.post("/schedules/{schedule_id}/delete")
async def delete_schedule(page: ConsolePage, schedule_id: uuid.UUID) -> Response:
    return await page.act("DELETE", f"/api/schedules/{schedule_id}", "/ui/schedules", "deleted")


@router.post("/schedules/{schedule_id}/{action}")
async def schedule_action(page: ConsolePage, schedule_id: uuid.UUID, action: str) -> Response:
    if action not in _ACTIONS:
        raise ApiProblem(404, {"detail": f"no action {action!r}"})
    path = f"/api/schedules/{schedule_id}/{action}"
    return await page.act("POST", path, f"/ui/schedules/{schedule_id}", _ACTIONS[action])


@router.get("/schedules/{schedule_id}/runs")
async def schedule_runs(
    page: ConsolePage,
    schedule_id: uuid.UUID,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    found = await page.get(f"/api/schedules/{schedule_id}")
    params = {"limit": _PAGE_SIZE, **({"status": status} if status else {}), **({"cursor": cursor} if cursor else {})}
    runs = await page.get(f"/api/schedules/{schedule_id}/runs", params)
    return page.render(
        "runs.html",
        schedule=found,
        runs=runs["items"],
        next_cursor=runs.get("next_cursor"),
        status=status or "",
        title=f"Runs of {found['name']}",
    )


@router.get("/runs/{run_id}")
async def run(page: ConsolePage, run_id: uuid.UUID) -> Response:
    found = await page.get(f"/api/runs/{run_id}")
    return page.render("run.html", run=found, title=f"Run {run_id}")
