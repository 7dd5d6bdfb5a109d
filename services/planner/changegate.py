"""Changes before fires: after recovery or a broker outage, the planner fires only once it has applied every
schedule change already in ``chime.schedules``.

A planner that restarts, takes over partitions, or loses the broker for a while comes back with fires overdue
and, possibly, changes it has not read yet: a schedule deleted or paused meanwhile. Firing first would deliver
runs the API has already acknowledged as deleted. So the gate closes at recovery and when a publish fails, notes
each owned partition's high watermark, and opens once the changes applied reach those offsets. The target is
taken once: changes that keep arriving afterwards (creates at a steady rate) are applied as usual and never
hold fires back.

After a broker outage it also waits ``settle_s`` once the broker answers again: the API's outbox relay retries
on its own backoff (at most 5 s), and the changes it accepted during the outage reach the topic only then.
The gate never holds fires longer than ``max_hold_s`` (a partition whose changes never stop arriving, say);
it then opens with a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

# (start, high watermark) per partition: the committed offset when the partition was taken, and the next offset
# to be written. None where not known yet.
Offsets = Callable[[list[int]], Awaitable[dict[int, tuple[int | None, int | None]]]]


class ChangeGate:
    def __init__(self, offsets: Offsets, *, settle_s: float, max_hold_s: float) -> None:
        self._offsets = offsets
        self._settle_s = settle_s
        self._max_hold_s = max_hold_s
        self._applied: dict[int, int] = {}
        self._open = False
        self._closed_at = time.monotonic()
        self._reason = "starting"
        self._settle = False
        self._reachable_since: float | None = None
        # The high watermarks to catch up with, noted at the first answer after closing (after the settle period).
        self._target: dict[int, int] | None = None

    @property
    def is_open(self) -> bool:
        return self._open

    @property
    def reason(self) -> str:
        return "" if self._open else self._reason

    def close(self, reason: str, *, settle: bool = False) -> None:
        if self._open or settle:
            self._closed_at = time.monotonic()
        self._open = False
        self._reason = reason
        self._settle = self._settle or settle
        self._reachable_since = None
        self._target = None

    def applied(self, partition: int, offset: int) -> int:
        """The change at ``offset`` has been applied (entries, tables and heap); how many offsets of the partition
        were passed over since the one applied before it (0 when it follows on, or is the first since the
        partition was taken)."""
        last = self._applied.get(partition)
        if last is None or offset > last:
            self._applied[partition] = offset
        return 0 if last is None or offset <= last else offset - last - 1

    def forget(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._applied.pop(partition, None)

    async def check(self, partitions: list[int]) -> bool:
        """Open the gate if every partition's applied changes reach its high watermark; whether it is open."""
        if self._open:
            return True
        now = time.monotonic()
        if now - self._closed_at > self._max_hold_s:
            log.warning("opening the change gate after %.0f s (%s) without catching up", self._max_hold_s, self._reason)
            return self._opened()
        try:
            offsets = await self._offsets(partitions)
        except Exception as exc:  # noqa: BLE001 - the broker may still be away: stay closed, look again next turn
            log.debug("change gate: offsets unavailable: %s", exc)
            self._reachable_since = None
            return False
        if self._reachable_since is None:
            self._reachable_since = now
        if self._settle and now - self._reachable_since < self._settle_s:
            return False
        if self._target is None or not set(partitions) <= self._target.keys():
            highwaters = {p: offsets.get(p, (None, None))[1] for p in partitions}
            if any(h is None for h in highwaters.values()):
                return False
            self._target = {p: h for p, h in highwaters.items() if h is not None}
        for partition in partitions:
            start = offsets.get(partition, (None, None))[0]
            done = max(self._applied.get(partition, -1) + 1, start or 0)
            if done < self._target[partition]:
                return False
        return self._opened()

    def _opened(self) -> bool:
        held = time.monotonic() - self._closed_at
        if held > 1:
            log.info("change gate open after %.1f s (%s)", held, self._reason)
        self._open = True
        self._settle = False
        return True
