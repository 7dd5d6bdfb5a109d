"""The light reads of run records (the executor's, the recorder's), and the collector-pause metric."""

from __future__ import annotations

import gc
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from shared.errors import EventDecodeError
from shared.events import RunCancelled, RunDue, RunSucceeded, ScheduleStopped, encode_event
from shared.events.probe import probe_due_row, probe_run
from shared.events.runs import RunCancelledData, RunDueData, Trigger
from shared.events.schedule import DeliverySpec, RetryPolicy, ScheduleStoppedData, StoppedVersion
from shared.gcpause import GcPauses

_NOMINAL = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _due(**changes: object) -> RunDueData:
    fields: dict[str, object] = {
        "run_id": uuid.uuid4(),
        "schedule_id": uuid.uuid4(),
        "tenant_id": "acme",
        "schedule_version": 1,
        "nominal_time": _NOMINAL,
        "planned_time": _NOMINAL + timedelta(milliseconds=250),
        "delivery": DeliverySpec(url="https://example.com/hook", headers={"x-a": "b"}, body={"k": [1, 2]}),
        "retry_policy": RetryPolicy(),
    }
    fields.update(changes)
    return RunDueData.model_validate(fields)


def test_probe_reads_what_holding_a_run_needs() -> None:
    data = _due(attempt=3, not_before=_NOMINAL + timedelta(seconds=30))
    probe = probe_run(encode_event(RunDue(subject="s", tenant="acme", time=_NOMINAL, data=data)))
    assert probe.is_due and not probe.is_cancel
    assert probe.data.run_id == data.run_id
    assert probe.data.attempt == 3
    assert probe.data.planned_time == data.planned_time
    assert probe.data.not_before == data.not_before


def test_the_recorder_reads_a_due_runs_row_values_and_nothing_else() -> None:
    data = _due(final=True)
    row = probe_due_row(encode_event(RunDue(subject="s", tenant="acme", time=_NOMINAL, data=data)))
    assert row is not None
    assert (row.data.run_id, row.data.schedule_id, row.data.tenant_id) == (data.run_id, data.schedule_id, "acme")
    assert (row.data.nominal_time, row.data.planned_time) == (data.nominal_time, data.planned_time)
    assert row.data.schedule_version == 1 and row.data.final and row.data.trigger is Trigger.SCHEDULE


def test_the_recorder_reads_replays_cancels_and_broken_records_in_full() -> None:
    replay = _due(trigger=Trigger.REPLAY)
    assert probe_due_row(encode_event(RunDue(subject="s", tenant="acme", time=_NOMINAL, data=replay))) is None
    cancel = RunCancelledData(
        run_id=uuid.uuid4(), schedule_id=uuid.uuid4(), tenant_id="acme", nominal_time=_NOMINAL, reason="paused"
    )
    assert probe_due_row(encode_event(RunCancelled(subject="s", tenant="acme", time=_NOMINAL, data=cancel))) is None
    broken = json.loads(encode_event(RunDue(subject="s", tenant="acme", time=_NOMINAL, data=_due())))
    assert probe_due_row(json.dumps(broken, separators=(",", ":")).encode()) is not None
    del broken["data"]["run_id"]
    assert probe_due_row(json.dumps(broken, separators=(",", ":")).encode()) is None


def test_probe_recognises_a_cancel() -> None:
    run_id = uuid.uuid4()
    data = RunCancelledData(
        run_id=run_id, schedule_id=uuid.uuid4(), tenant_id="acme", nominal_time=_NOMINAL, reason="paused"
    )
    probe = probe_run(encode_event(RunCancelled(subject="s", tenant="acme", time=_NOMINAL, data=data)))
    assert probe.is_cancel and not probe.is_due
    assert probe.data.run_id == run_id
    assert probe.data.planned_time is None


def test_probe_recognises_a_stopped_schedule() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    stopped = [
        StoppedVersion(schedule_id=first, schedule_version=4),
        StoppedVersion(schedule_id=second, schedule_version=1),
    ]
    data = ScheduleStoppedData(tenant_id="acme", status="deleted", stopped_at=_NOMINAL, schedules=stopped)
    probe = probe_run(encode_event(ScheduleStopped(subject="s", tenant="acme", time=_NOMINAL, data=data)))
    assert probe.is_stop and not probe.is_due and not probe.is_cancel
    assert probe.stops == [(first, 4, "deleted"), (second, 1, "deleted")]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        (RunDue, {"attempt": 1}),
        (RunCancelled, {"reason": "x"}),
        (ScheduleStopped, {"status": "paused"}),
        (ScheduleStopped, {"schedules": []}),
        (ScheduleStopped, {"schedules": [{"schedule_id": str(uuid.uuid4())}]}),
    ],
)
def test_probe_refuses_a_run_event_without_what_acting_on_it_needs(kind: type, data: dict[str, object]) -> None:
    raw = json.dumps({"type": kind.model_fields["type"].default, "data": data}).encode()
    with pytest.raises(EventDecodeError):
        probe_run(raw)


def test_probe_passes_over_other_run_events() -> None:
    raw = encode_event(RunDue(subject="s", tenant="acme", time=_NOMINAL, data=_due()))
    other = raw.replace(
        RunDue.model_fields["type"].default.encode(), RunSucceeded.model_fields["type"].default.encode()
    )
    probe = probe_run(other)
    assert not probe.is_due and not probe.is_cancel


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"type": "x"}', b'{"type": "x", "data": {"run_id": "nope"}}'])
def test_probe_refuses_what_is_not_a_run_event(raw: bytes) -> None:
    with pytest.raises(EventDecodeError):
        probe_run(raw)


def test_gc_pauses_are_counted_by_generation() -> None:
    registry = CollectorRegistry()
    pauses = GcPauses(registry)
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(2)
    finally:
        pauses.uninstall()
    for generation in ("0", "2"):
        count = registry.get_sample_value("chime_gc_pause_seconds_count", {"generation": generation})
        assert count is not None and count >= 1
    before = registry.get_sample_value("chime_gc_pause_seconds_count", {"generation": "2"})
    gc.collect()
    # Uninstalled: collections are no longer observed.
    assert registry.get_sample_value("chime_gc_pause_seconds_count", {"generation": "2"}) == before
