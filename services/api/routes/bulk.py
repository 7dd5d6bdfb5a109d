"""``POST /api/schedules/bulk``: pause, resume or delete the schedules a selector matches."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.api.auth import WriteSchedules
from services.api.db.schedules_repo import BulkAction, ListFilter
from services.api.deps import Deps
from shared.errors import InvalidSelector
from shared.events.schedule import ScheduleStatus

router = APIRouter(prefix="/api/schedules", tags=["schedules"])

LabelKey = Annotated[str, Field(min_length=1, max_length=63)]
LabelValue = Annotated[str, Field(max_length=256)]


class BulkSelector(BaseModel):
    """Which schedules: every given criterion must match (labels: each key with that value, or present if null)."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[LabelKey, LabelValue | None] | None = Field(default=None, examples=[{"team": "billing", "tier": None}])
    status: ScheduleStatus | None = Field(default=None, description="active, paused or completed")
    name_prefix: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    ids: Annotated[list[uuid.UUID], Field(min_length=1, max_length=10_000)] | None = None

    @model_validator(mode="after")
    def _live_status(self) -> BulkSelector:
        if self.status is ScheduleStatus.DELETED:
            raise InvalidSelector("selector.status", "deleted schedules cannot be selected")
        return self

    def is_empty(self) -> bool:
        return not (self.labels or self.status or self.name_prefix or self.ids)


class BulkRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"action": "pause", "selector": {"labels": {"team": "billing"}}, "dry_run": True}]
        },
    )

    action: BulkAction
    selector: BulkSelector
    dry_run: bool = Field(default=False, description="Count the matches and change nothing.")


class BulkOut(BaseModel):
    matched: int = Field(description="Live schedules the selector matched.")
    changed: int = Field(
        description="Schedules the action changed (pause: those active; resume: those paused; delete: all). "
        "Always 0 for a dry run."
    )


@router.post("/bulk", response_model=BulkOut)
async def bulk_change(body: BulkRequest, principal: WriteSchedules, deps: Deps) -> BulkOut:
    """Pause, resume or delete every schedule the selector matches, at most ``CHIME_BULK_MAX`` (422 beyond: narrow
    the selector). Each change is an ordinary versioned schedule change (a new version, an event on
    ``chime.schedules``), all committed together."""
    selector = body.selector
    if selector.is_empty():
        raise InvalidSelector("selector", "an empty selector would match every schedule; name at least one criterion")
    flt = ListFilter(
        status=selector.status,
        name_prefix=selector.name_prefix,
        labels=dict(selector.labels or {}),
        ids=tuple(selector.ids) if selector.ids else None,
    )
    matched, changed = await deps.schedules.bulk(principal.tenant, body.action, flt, dry_run=body.dry_run)
    return BulkOut(matched=matched, changed=changed)
