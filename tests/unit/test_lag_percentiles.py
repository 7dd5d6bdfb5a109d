"""Lag percentiles read from the per-minute bucket counts that migration 0013's triggers keep."""

from __future__ import annotations

import math

import pytest

from services.api.db.stats_repo import lag_percentile


def _bucket(ms: float) -> int:
    """``chime_lag_bucket`` (migration 0013), in Python."""
    return 0 if ms <= 0.5 else min(1000, 1 + math.floor(math.log(ms / 0.5) / math.log(1.05)))


def _counts(lags: list[float]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for ms in lags:
        counts[_bucket(ms)] = counts.get(_bucket(ms), 0) + 1
    return counts


def test_no_lags_no_percentile() -> None:
    assert lag_percentile({}, 0.5) is None
    assert lag_percentile({3: 0}, 0.99) is None


def test_calls_on_time_read_as_zero() -> None:
    assert lag_percentile(_counts([0.1, 0.2, 0.5, -3.0]), 0.99) == 0.0


@pytest.mark.parametrize("ms", [0.6, 1.0, 7.3, 42.0, 999.0, 61_000.0, 3_600_000.0])
def test_a_percentile_is_within_two_and_a_half_percent(ms: float) -> None:
    assert lag_percentile(_counts([ms]), 0.5) == pytest.approx(ms, rel=0.025)


def test_the_rank_picks_the_bucket() -> None:
    lags = [float(n) for n in range(1, 101)]  # 1..100 ms
    counts = _counts(lags)
    assert lag_percentile(counts, 0.5) == pytest.approx(50, rel=0.05)
    assert lag_percentile(counts, 0.99) == pytest.approx(99, rel=0.05)
    assert lag_percentile(counts, 1.0) == pytest.approx(100, rel=0.025)
