"""The executor's ``run.succeeded`` records are byte for byte what the event models serialize."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.executor.outcome_records import succeeded_record
from shared.events import RunSucceeded, decode_event, encode_event
from shared.events.runs import RunDueData, RunOutcomeData, RunStatus, Trigger

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

# Strings a JSON encoder may treat differently: quotes, backslashes, control characters, non-ASCII, U+2028.
_chars = st.characters(exclude_categories=["Cs"])
_text = st.text(alphabet=_chars, max_size=40)
_tenant = st.text(alphabet=_chars, min_size=1, max_size=20)
# hypothesis takes naive bounds and attaches the zone itself.
_instant = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


def _due(tenant: str, nominal: datetime, attempt: int, trigger: Trigger) -> RunDueData:
    return RunDueData(
        run_id=uuid.uuid4(),
        schedule_id=uuid.uuid4(),
        tenant_id=tenant,
        schedule_version=3,
        nominal_time=nominal,
        planned_time=nominal,
        attempt=attempt,
        trigger=trigger,
        delivery={"url": "https://example.com/hook"},
        retry_policy={},
    )


def _model_bytes(
    record: bytes, due: RunDueData, worker: str, started: datetime, finished: datetime, **call: object
) -> bytes:
    """What ``encode_event`` makes of the same event, with the record's own event id."""
    outcome = RunOutcomeData(
        run_id=due.run_id,
        schedule_id=due.schedule_id,
        tenant_id=due.tenant_id,
        nominal_time=due.nominal_time,
        trigger=due.trigger,
        attempt=due.attempt,
        status=RunStatus.SUCCEEDED,
        worker=worker,
        started_at=started,
        finished_at=finished,
        **call,
    )
    event = RunSucceeded(
        id=json.loads(record)["id"], subject=str(due.schedule_id), tenant=due.tenant_id, time=finished, data=outcome
    )
    return encode_event(event)


@settings(max_examples=300, deadline=None)
@given(
    tenant=_tenant,
    worker=_text,
    excerpt=st.none() | _text,
    status=st.none() | st.integers(min_value=200, max_value=299),
    nominal=_instant,
    started=_instant,
    took=st.integers(min_value=0, max_value=10**6),
    attempt=st.integers(min_value=1, max_value=50),
    trigger=st.sampled_from(list(Trigger)),
)
def test_a_succeeded_record_is_the_models_serialization(
    tenant: str,
    worker: str,
    excerpt: str | None,
    status: int | None,
    nominal: datetime,
    started: datetime,
    took: int,
    attempt: int,
    trigger: Trigger,
) -> None:
    due = _due(tenant, nominal, attempt, trigger)
    finished = started + timedelta(microseconds=took)
    duration = took // 1000
    record = succeeded_record(
        due,
        worker=worker,
        started_at=started,
        finished_at=finished,
        duration_ms=duration,
        http_status=status,
        response_excerpt=excerpt,
    )
    expected = _model_bytes(
        record, due, worker, started, finished, duration_ms=duration, http_status=status, response_excerpt=excerpt
    )
    assert record == expected
    decoded = decode_event(record)
    assert isinstance(decoded, RunSucceeded)
    assert decoded.data.run_id == due.run_id and decoded.data.response_excerpt == excerpt


def test_every_record_has_an_event_id_of_its_own() -> None:
    due = _due("t1", T0, 1, Trigger.SCHEDULE)
    ids = {
        json.loads(
            succeeded_record(
                due,
                worker="w",
                started_at=T0,
                finished_at=T0,
                duration_ms=0,
                http_status=200,
                response_excerpt=None,
            )
        )["id"]
        for _ in range(100)
    }
    assert len(ids) == 100
