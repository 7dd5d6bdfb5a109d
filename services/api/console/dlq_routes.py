"""Dead letters: the list with filters, an entry's page, replay (one, or all matching a filter) and delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from services.api.console.client import ApiProblem
from services.api.console.forms import FormErrors, dlq_filter
from services.api.console.pages import ConsolePage, redirect

router = APIRouter(prefix="/ui/dlq", include_in_schema=False)

_PAGE_SIZE = 25


@router.get("")
async def dead_letters(
    page: ConsolePage,
    schedule_id: Annotated[str | None, Query(max_length=40)] = None,
    http_status: Annotated[str | None, Query(max_length=3)] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    from_: Annotated[str | None, Query(alias="from", max_length=40)] = None,
    to: Annotated[str | None, Query(max_length=40)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    count: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    filters = {"schedule_id": schedule_id, "http_status": http_status, "from": from_, "to": to, "status": status}
    shown = {k: v or "" for k, v in filters.items()}
    try:
        params: dict[str, Any] = dlq_filter(shown)
        params["limit"] = _PAGE_SIZE
        params.update({k: v for k, v in (("status", status), ("cursor", cursor)) if v})
        listed = await page.get("/api/dlq", params)
    except FormErrors as exc:
        return page.render("dlq.html", 422, items=[], filters=shown, errors=exc.errors, title="Dead letters")
    except ApiProblem as exc:
        if exc.status != 422:
            raise
        return page.render("dlq.html", 422, items=[], filters=shown, errors=exc.field_errors(), title="Dead letters")
    return page.render(
        "dlq.html",
        items=listed["items"],
        next_cursor=listed.get("next_cursor"),
        filters=shown,
        errors={},
        count=count,
        title="Dead letters",
    )


@router.post("/replay")
async def bulk_replay(page: ConsolePage) -> Response:
    """Replay every dead entry the filter matches: a count to confirm first, then the replay."""
    form = await page.form()
    try:
        body: dict[str, Any] = {**dlq_filter(form), "limit": 1000}
        if form.get("confirmed") != "yes":
            counted = await page.send("POST", "/api/dlq/replay", json={**body, "dry_run": True})
            return page.render("confirm_replay.html", form=form, count=counted.body["count"], title="Confirm replay")
        done = await page.send("POST", "/api/dlq/replay", json=body)
    except FormErrors as exc:
        return page.render("confirm_replay.html", 422, form=form, count=None, error=str(exc), title="Replay")
    except ApiProblem as exc:
        if exc.status not in (422, 429):
            raise
        return page.render("confirm_replay.html", exc.status, form=form, count=None, error=exc.detail, title="Replay")
    return redirect("/ui/dlq", "bulk-replay", count=str(done.body["count"]))


@router.get("/{entry_id}")
async def dead_letter(page: ConsolePage, entry_id: uuid.UUID) -> Response:
    entry = await page.get(f"/api/dlq/{entry_id}")
    return page.render("dlq_entry.html", entry=entry, title="Dead letter")


@router.post("/{entry_id}/replay")
async def replay(page: ConsolePage, entry_id: uuid.UUID) -> Response:
    return await page.act("POST", f"/api/dlq/{entry_id}/replay", f"/ui/dlq/{entry_id}", "replayed")


@router.post("/{entry_id}/delete")
async def delete(page: ConsolePage, entry_id: uuid.UUID) -> Response:
    return await page.act("DELETE", f"/api/dlq/{entry_id}", "/ui/dlq", "deleted")
