"""The bytes of the ``run.due`` records the fire loop publishes, one schedule version serialized once.

A fire's record differs from the previous fire of the same schedule version only in five values: the event's
``id`` and ``time``, and the run's ``run_id``, ``nominal_time`` and ``planned_time``. Everything else (the
delivery, the retry policy, the ids) is the schedule's. Building the envelope and serializing it for every fire
was a sixth of the planner's work at 1,000 fires/s; the record is serialized in full once per schedule version,
split at those five values, and later fires join the pieces with their own.

The output is byte for byte what ``encode_event`` makes of the same event (a unit test holds it to that). The
five values all come before the delivery, the only part with content a user chose, and a user's string can
never contain an unescaped ``"name":"`` sequence: the first match of each, in order, is the field itself.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from shared.events import RunDue, encode_event
from shared.events.envelope import new_event_id
from shared.events.runs import RunDueData, Trigger
from shared.timefmt import format_utc

# Schedule versions whose pieces are kept: a set that fires is reused every interval, and at 10,000 schedules the
# pieces are about 10 MB. Past this many, the store starts over (a cost of one full encode per schedule).
_CAPACITY = 20_000
# The spliced fields, in the order they appear in the serialized event.
_SPLICED = (b"id", b"time", b"run_id", b"nominal_time", b"planned_time")

_Key = tuple[uuid.UUID, int, Trigger, bool, bool]


class DueRecords:
    """``run.due`` record values for fires; remembers each schedule version's pieces."""

    def __init__(self, capacity: int = _CAPACITY) -> None:
        self._capacity = capacity
        # An empty list marks a version whose record could not be split: it is always serialized in full.
        self._pieces: dict[_Key, list[bytes]] = {}
        # A turn announces all its fires at one instant: it is formatted once.
        self._now: datetime | None = None
        self._now_text = b""

    def encode(self, run: RunDueData, now: datetime) -> bytes:
        """The record value of ``run``, announced at ``now``: ``encode_event`` of its ``RunDue``."""
        if not _first_attempt(run):
            return encode_event(_event(run, now))
        key = (run.schedule_id, run.schedule_version, run.trigger, run.final, run.report_finish)
        pieces = self._pieces.get(key)
        if pieces is None:
            event = _event(run, now)
            raw = encode_event(event)
            if len(self._pieces) >= self._capacity:
                self._pieces.clear()
            self._pieces[key] = _split(raw, _values(event.id, now, run)) or []
            return raw
        if not pieces:
            return encode_event(_event(run, now))
        if now != self._now:
            self._now, self._now_text = now, format_utc(now).encode()
        nominal = format_utc(run.nominal_time).encode()
        planned = nominal if run.planned_time == run.nominal_time else format_utc(run.planned_time).encode()
        return b"".join(
            (
                pieces[0],
                new_event_id().encode(),
                pieces[1],
                self._now_text,
                pieces[2],
                str(run.run_id).encode(),
                pieces[3],
                nominal,
                pieces[4],
                planned,
                pieces[5],
            )
        )

    def __len__(self) -> int:
        return len(self._pieces)


def _first_attempt(run: RunDueData) -> bool:
    """A fire as the fire loop makes it; other runs (retries, replays) carry fields the pieces do not."""
    return (
        run.attempt == 1
        and run.budget_start_attempt == 1
        and run.not_before is None
        and run.age_from is None
        and not run.history
    )


def _event(run: RunDueData, now: datetime) -> RunDue:
    return RunDue(subject=str(run.schedule_id), tenant=run.tenant_id, time=now, data=run)


def _values(event_id: str, now: datetime, run: RunDueData) -> tuple[bytes, ...]:
    return (
        event_id.encode(),
        format_utc(now).encode(),
        str(run.run_id).encode(),
        format_utc(run.nominal_time).encode(),
        format_utc(run.planned_time).encode(),
    )


def _split(raw: bytes, values: tuple[bytes, ...]) -> list[bytes] | None:
    """``raw`` cut around each spliced field's value: the pieces between them, or None when a field is missing."""
    pieces: list[bytes] = []
    start = 0
    for name, value in zip(_SPLICED, values, strict=True):
        found = raw.find(b'"' + name + b'":"' + value + b'"', start)
        if found < 0:
            return None
        at = found + len(name) + 4
        pieces.append(raw[start:at])
        start = at + len(value)
    pieces.append(raw[start:])
    return pieces
