"""Applies the recorder's auto-pause requests: the API is the one writer of schedules, so it does the pausing."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Counter

from services.api.background import BackgroundTask
from services.api.db.schedules_repo import ScheduleRepository

log = logging.getLogger(__name__)

# A failure streak takes runs (seconds at the least) to build; a second more before the pause changes little and
# keeps an idle API's database traffic to one small query a second.
_POLL_S = 1.0


class AutoPauser(BackgroundTask):
    name = "auto-pause"

    def __init__(self, schedules: ScheduleRepository, paused: Counter, poll_s: float = _POLL_S) -> None:
        super().__init__()
        self._schedules = schedules
        self._paused = paused
        self._poll_s = poll_s

    async def _run(self) -> None:
        while True:
            try:
                handled, paused = await self._schedules.apply_auto_pauses()
                self._paused.inc(paused)
                if handled:
                    continue  # there may be more waiting
            except Exception as exc:  # noqa: BLE001 - a database restart: the requests wait in their table
                log.warning("auto-pause requests not applied yet: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._poll_s)
