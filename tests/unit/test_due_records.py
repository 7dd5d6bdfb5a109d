"""The fire loop's ``run.due`` records are byte for byte what the event model serializes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.planner.due_records import DueRecords
from services.planner.entries import apply_upsert
from services.planner.firing import due_data, fire
from shared.events import RunDue, encode_event
from shared.events.runs import RunDueData, Trigger
from shared.events.schedule import DeliverySpec, ScheduleState

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _state(body: object, headers: dict[str, str], tenant: str, version: int = 1) -> ScheduleState:
    return ScheduleState(
        id=uuid.uuid4(),
        tenant_id=tenant,
        name="n",
        type="interval",
        interval_seconds=10,
        jitter_seconds=3,
        payload=DeliverySpec(url="https://example.com/hook?time=1", headers=headers, body=body),
        status="active",
        version=version,
        created_at=T0,
        updated_at=T0,
    )


def _model_bytes(value: bytes, run: RunDueData) -> bytes:
    """What ``encode_event`` makes of the same event: same id and time as the record under test."""
    sent = json.loads(value)
    event = RunDue(id=sent["id"], subject=str(run.schedule_id), tenant=run.tenant_id, time=sent["time"], data=run)
    return encode_event(event)


# Bodies that repeat the spliced field names and values in places a naive search would take for the fields.
_TRICKY = st.sampled_from(
    [
        {"time": "2026-05-01T12:00:10.000Z", "run_id": "x", "id": "y"},
        '"nominal_time":"2026-05-01T12:00:10.000Z"',
        {"nested": {"planned_time": "2026-05-01T12:00:10.000Z"}},
        None,
        ["id", "time"],
    ]
)
_TENANTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(body=_TRICKY, tenant=_TENANTS, fires=st.integers(min_value=1, max_value=6))
def test_every_fire_of_a_version_matches_the_model(body: object, tenant: str, fires: int) -> None:
    records = DueRecords()
    entry, _ = apply_upsert(None, _state(body, {"X-Time": '"time":"x"'}, tenant), T0)
    assert entry is not None
    now = T0
    for _ in range(fires):
        firing = fire(entry, now)
        (run,) = firing.due
        value = records.encode(run, now)
        assert value == _model_bytes(value, run)
        entry = firing.after
        now += timedelta(seconds=10)
    # One set of pieces per schedule version, reused by every later fire.
    assert len(records) == 1
    assert all(records._pieces.values())


def test_the_last_run_and_a_new_version_get_pieces_of_their_own() -> None:
    records = DueRecords()
    entry, _ = apply_upsert(None, _state({"a": 1}, {}, "acme"), T0)
    assert entry is not None
    nxt = entry.next_fire()
    assert nxt is not None
    for run in (due_data(entry, nxt, final=False), due_data(entry, nxt, final=True)):
        value = records.encode(run, T0)
        assert value == _model_bytes(value, run)
        assert json.loads(value)["data"]["final"] is run.final
    newer, _ = apply_upsert(
        entry, _state({"a": 2}, {}, "acme", version=2).model_copy(update={"id": entry.schedule.id}), T0
    )
    assert newer is not None and newer.version == 2
    run = due_data(newer, nxt, final=False)
    value = records.encode(run, T0)
    assert json.loads(value)["data"]["delivery"]["body"] == {"a": 2}
    assert value == _model_bytes(value, run)
    assert len(records) == 3


def test_runs_that_are_not_a_first_attempt_are_serialized_in_full() -> None:
    records = DueRecords()
    entry, _ = apply_upsert(None, _state(None, {}, "acme"), T0)
    assert entry is not None
    nxt = entry.next_fire()
    assert nxt is not None
    run = due_data(entry, nxt, final=False)
    retry = run.model_copy(update={"attempt": 2, "not_before": T0, "trigger": Trigger.SCHEDULE})
    value = records.encode(retry, T0)
    assert value == _model_bytes(value, retry)
    assert len(records) == 0


def test_a_full_store_starts_over() -> None:
    records = DueRecords(capacity=2)
    for n in range(5):
        entry, _ = apply_upsert(None, _state({"n": n}, {}, "acme"), T0)
        assert entry is not None
        nxt = entry.next_fire()
        assert nxt is not None
        run = due_data(entry, nxt, final=False)
        value = records.encode(run, T0)
        assert value == _model_bytes(value, run)
        assert len(records) <= 2
