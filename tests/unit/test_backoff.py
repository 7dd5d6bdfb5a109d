"""Backoff policies: exponential, linear, fixed, full jitter, caps, attempt budget and event age."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shared.backoff import Dead, Retry, base_delay, decide, jittered, tier_for
from shared.events.schedule import RetryPolicy
from shared.topics import RETRY_TIERS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RUN = uuid.UUID("0193a6c4-0000-7000-8000-0000000000bb")


def test_exponential_linear_fixed() -> None:
    exp = RetryPolicy(initial_delay_seconds=1, multiplier=2, max_delay_seconds=10, jitter=False)
    assert [base_delay(exp, n) for n in range(1, 6)] == [1, 2, 4, 8, 10]
    lin = RetryPolicy(backoff="linear", initial_delay_seconds=3, max_delay_seconds=10, jitter=False)
    assert [base_delay(lin, n) for n in range(1, 5)] == [3, 6, 9, 10]
    fixed = RetryPolicy(backoff="fixed", initial_delay_seconds=7, jitter=False)
    assert [base_delay(fixed, n) for n in range(1, 4)] == [7, 7, 7]


def test_attempts_and_age_end_the_run() -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay_seconds=1, jitter=False, max_event_age_seconds=60)
    first = decide(policy, run_id=RUN, failed_attempt=1, attempts_used=1, failed_at=T0, age_origin=T0)
    assert first == Retry(not_before=T0 + timedelta(seconds=1), delay_seconds=1)
    assert isinstance(decide(policy, run_id=RUN, failed_attempt=3, attempts_used=3, failed_at=T0, age_origin=T0), Dead)
    old = decide(
        policy, run_id=RUN, failed_attempt=1, attempts_used=1, failed_at=T0, age_origin=T0 - timedelta(seconds=60)
    )
    assert isinstance(old, Dead) and "max_event_age" in old.reason


def test_retry_after_is_a_floor_capped_by_max_delay() -> None:
    policy = RetryPolicy(initial_delay_seconds=1, max_delay_seconds=30, jitter=False)
    got = decide(
        policy, run_id=RUN, failed_attempt=1, attempts_used=1, failed_at=T0, age_origin=T0, retry_after_seconds=2
    )
    assert isinstance(got, Retry) and got.delay_seconds == 2
    capped = decide(
        policy, run_id=RUN, failed_attempt=1, attempts_used=1, failed_at=T0, age_origin=T0, retry_after_seconds=3600
    )
    assert isinstance(capped, Retry) and capped.delay_seconds == 30


def test_tiers() -> None:
    assert tier_for(0.5, RETRY_TIERS) == "5s"
    assert tier_for(5, RETRY_TIERS) == "5s"
    assert tier_for(6, RETRY_TIERS) == "30s"
    assert tier_for(299, RETRY_TIERS) == "5m"
    assert tier_for(10_000, RETRY_TIERS) == "1h"


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(1, 100),
    backoff=st.sampled_from(["exponential", "linear", "fixed"]),
    initial_delay_seconds=st.floats(0, 100, allow_nan=False),
    max_delay_seconds=st.floats(100, 7 * 86_400, allow_nan=False),
    multiplier=st.floats(1, 100, allow_nan=False),
    max_event_age_seconds=st.integers(1, 30 * 86_400),
    jitter=st.booleans(),
)


@given(policy=policies, attempt=st.integers(1, 200), run=st.uuids())
def test_delay_is_bounded_deterministic_and_non_decreasing_without_jitter(
    policy: RetryPolicy, attempt: int, run: uuid.UUID
) -> None:
    delay = jittered(policy, attempt, run)
    assert 0 <= delay <= policy.max_delay_seconds
    assert delay == jittered(policy, attempt, run)
    if not policy.jitter:
        assert base_delay(policy, attempt) <= base_delay(policy, attempt + 1)


@given(policy=policies, used=st.integers(1, 150), run=st.uuids(), age=st.integers(0, 40 * 86_400))
def test_decision_respects_every_budget(policy: RetryPolicy, used: int, run: uuid.UUID, age: int) -> None:
    origin = T0 - timedelta(seconds=age)
    result = decide(policy, run_id=run, failed_attempt=used, attempts_used=used, failed_at=T0, age_origin=origin)
    if used >= policy.max_attempts:
        assert isinstance(result, Dead)
    elif isinstance(result, Retry):
        assert result.not_before >= T0
        assert (result.not_before - origin).total_seconds() <= policy.max_event_age_seconds
    else:
        assert "max_event_age" in result.reason
