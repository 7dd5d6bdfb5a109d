"""Operational notifications: the events Chime sends to a tenant's notification endpoints.

``run.dead_lettered`` and ``run.skipped`` carry the same ``data`` as their events on ``chime.runs.results``; the
schedule events below exist only as notifications.
"""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.envelope import Envelope
from shared.events.runs import RunOutcomeData, RunSkippedData
from shared.types import Instant


class NotificationType(StrEnum):
    RUN_DEAD_LETTERED = "run.dead_lettered"
    RUN_SKIPPED = "run.skipped"
    SCHEDULE_FAILING = "schedule.failing"
    SCHEDULE_RECOVERED = "schedule.recovered"
    SCHEDULE_AUTO_PAUSED = "schedule.auto_paused"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ScheduleFailingData(_Data):
    schedule_id: uuid.UUID
    tenant_id: str
    name: str
    consecutive_failures: int = Field(description="Runs in a row that ended dead-lettered.")
    alert_after_failures: int
    last_failure_at: Instant | None = None


class ScheduleRecoveredData(_Data):
    schedule_id: uuid.UUID
    tenant_id: str
    name: str
    failures_before: int = Field(description="The failure streak the success ended.")
    recovered_at: Instant | None = Field(default=None, description="When the successful run ended.")


class ScheduleAutoPausedData(_Data):
    schedule_id: uuid.UUID
    tenant_id: str
    name: str
    consecutive_failures: int
    paused_reason: str
    paused_at: Instant


class RunDeadLetteredNotice(Envelope):
    type: Literal["dev.chime.run.dead_lettered.v1"] = "dev.chime.run.dead_lettered.v1"
    data: RunOutcomeData


class RunSkippedNotice(Envelope):
    type: Literal["dev.chime.run.skipped.v1"] = "dev.chime.run.skipped.v1"
    data: RunSkippedData


class ScheduleFailing(Envelope):
    type: Literal["dev.chime.schedule.failing.v1"] = "dev.chime.schedule.failing.v1"
    data: ScheduleFailingData


class ScheduleRecovered(Envelope):
    type: Literal["dev.chime.schedule.recovered.v1"] = "dev.chime.schedule.recovered.v1"
    data: ScheduleRecoveredData


class ScheduleAutoPaused(Envelope):
    type: Literal["dev.chime.schedule.auto_paused.v1"] = "dev.chime.schedule.auto_paused.v1"
    data: ScheduleAutoPausedData


NOTICES: dict[NotificationType, type[Envelope]] = {
    NotificationType.RUN_DEAD_LETTERED: RunDeadLetteredNotice,
    NotificationType.RUN_SKIPPED: RunSkippedNotice,
    NotificationType.SCHEDULE_FAILING: ScheduleFailing,
    NotificationType.SCHEDULE_RECOVERED: ScheduleRecovered,
    NotificationType.SCHEDULE_AUTO_PAUSED: ScheduleAutoPaused,
}


def notification_body(
    kind: NotificationType, notification_id: uuid.UUID, tenant: str, subject: str, time: Any, data: dict[str, Any]
) -> bytes:
    """The CloudEvent sent for one stored notification; its id is the notification's (``webhook-id``)."""
    model = NOTICES[kind]
    event = model.model_validate(
        {"id": str(notification_id), "tenant": tenant, "subject": subject, "time": time, "data": data}
    )
    return event.model_dump_json().encode()
