"""What counts toward a schedule's auto-pause: the failure streak since the last resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.api.run_health import failures_toward_pause

_RESUMED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def test_never_resumed_counts_the_whole_streak() -> None:
    assert failures_toward_pause(4, None, 0, None) == 4


def test_after_a_resume_only_later_failures_count() -> None:
    assert failures_toward_pause(7, None, 5, _RESUMED) == 2
    assert failures_toward_pause(7, _RESUMED - timedelta(hours=1), 5, _RESUMED) == 2


def test_a_success_after_the_resume_restarts_the_count() -> None:
    assert failures_toward_pause(2, _RESUMED + timedelta(seconds=5), 5, _RESUMED) == 2


def test_a_base_above_the_streak_counts_nothing_below_zero() -> None:
    assert failures_toward_pause(1, None, 5, _RESUMED) == 0
