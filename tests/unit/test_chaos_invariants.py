"""The chaos suite's judge: each invariant fails on the case it names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.sink import Arrival
from chaos.invariants import judge

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def _at(schedule: str, seconds: int, webhook: str) -> Arrival:
    nominal = T0 + timedelta(seconds=seconds)
    return Arrival(nominal + timedelta(milliseconds=5), schedule, nominal, webhook)


def test_a_clean_run_passes_and_counts_repeats_without_failing() -> None:
    arrivals = [_at("a", 0, "w0"), _at("a", 1, "w1"), _at("a", 1, "w1")]
    verdict = judge("x", arrivals, {"a": {T0, T0 + timedelta(seconds=1)}}, {})
    assert verdict.passed
    assert (verdict.expected, verdict.delivered, verdict.repeats) == (2, 2, 1)


def test_a_missing_fire_is_lost() -> None:
    verdict = judge("x", [_at("a", 0, "w0")], {"a": {T0, T0 + timedelta(seconds=1)}}, {})
    assert not verdict.passed and verdict.lost == 1


def test_one_fire_under_two_ids_fails() -> None:
    verdict = judge("x", [_at("a", 0, "w0"), _at("a", 0, "other")], {"a": {T0}}, {})
    assert not verdict.passed and verdict.duplicate_ids == 1


def test_a_delivery_more_than_a_second_after_the_delete_fails() -> None:
    deleted = {"a": T0}
    inside = judge("x", [_at("a", 1, "w1")], {}, deleted)
    assert inside.passed
    late = judge("x", [_at("a", 2, "w2")], {}, deleted)
    assert not late.passed and late.after_delete == 1


def test_a_fire_in_the_dead_letter_queue_is_accounted_for_not_lost() -> None:
    verdict = judge("x", [], {"a": {T0}}, {}, frozenset({("a", T0)}))
    assert verdict.passed and (verdict.lost, verdict.dead_lettered) == (0, 1)
