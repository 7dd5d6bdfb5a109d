"""Which announced runs an executor drops after the API acknowledged a pause or delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from services.executor.stops import StoppedSchedules
from shared.events.runs import RunDueData, Trigger
from shared.events.schedule import DeliverySpec, RetryPolicy

_NOMINAL = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_SCHEDULE = uuid.uuid4()


def _due(version: int = 1, **changes: object) -> RunDueData:
    fields: dict[str, object] = {
        "run_id": uuid.uuid4(),
        "schedule_id": _SCHEDULE,
        "tenant_id": "acme",
        "schedule_version": version,
        "nominal_time": _NOMINAL,
        "planned_time": _NOMINAL,
        "delivery": DeliverySpec(url="https://example.com/hook"),
        "retry_policy": RetryPolicy(),
    }
    fields.update(changes)
    return RunDueData.model_validate(fields)


def test_runs_of_versions_before_the_stop_are_withdrawn() -> None:
    stops = StoppedSchedules()
    assert not stops
    stops.stop(_SCHEDULE, 3, "paused")
    assert len(stops) == 1
    assert stops.withdrawn(_due(1)) == "paused"
    assert stops.withdrawn(_due(2)) == "paused"
    # A run planned after a resume (a later version) is called.
    assert stops.withdrawn(_due(3)) is None
    assert stops.withdrawn(_due(4)) is None
    assert stops.withdrawn(_due(1, schedule_id=uuid.uuid4())) is None


@pytest.mark.parametrize(
    "changes",
    [{"trigger": Trigger.RUN_NOW}, {"trigger": Trigger.BACKFILL}, {"trigger": Trigger.REPLAY}, {"attempt": 2}],
)
def test_requests_and_retries_are_not_withdrawn(changes: dict[str, object]) -> None:
    stops = StoppedSchedules()
    stops.stop(_SCHEDULE, 2, "deleted")
    assert stops.withdrawn(_due(1, **changes)) is None
    assert stops.withdrawn(_due(1)) == "deleted"


def test_an_older_stop_does_not_replace_a_newer_one() -> None:
    stops = StoppedSchedules()
    stops.stop(_SCHEDULE, 5, "deleted")
    stops.stop(_SCHEDULE, 2, "paused")  # a redelivered record from before
    assert stops.withdrawn(_due(4)) == "deleted"


def test_stops_are_forgotten_after_their_memory() -> None:
    stops = StoppedSchedules(memory_s=0.0)
    stops.stop(_SCHEDULE, 2, "paused")
    stops.prune()
    assert not stops
    assert stops.withdrawn(_due(1)) is None
