"""Pure parts of the planner (entry transitions) and the executor (offsets, signatures)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from services.executor.offsets import OffsetTracker
from services.planner.entries import Cursor, advance, apply_delete, apply_upsert, cursor_of, fire_is_current, join
from shared.events.schedule import DeliverySpec, ScheduleState, ScheduleStatus
from shared.runid import planned_run_id
from shared.webhook_signing import sign, verify

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def state(version: int = 1, status: str = "active", interval: int = 10, updated: datetime = T0) -> ScheduleState:
    return ScheduleState(
        id=uuid.UUID("0193a6c4-0000-7000-8000-0000000000aa"),
        tenant_id="acme",
        name="n",
        type="interval",
        interval_seconds=interval,
        payload=DeliverySpec(url="https://example.com/hook"),
        status=status,
        version=version,
        created_at=T0,
        updated_at=updated,
    )


def test_new_schedule_is_planned_from_its_creation() -> None:
    entry, cancel = apply_upsert(None, state(), now=T0 + timedelta(seconds=30))
    assert cancel == [] and entry is not None
    # Created at T0, the planner saw it 30 s later: the first fire (T0+10 s) is still due, not skipped.
    assert entry.next_nominal == T0 + timedelta(seconds=10)


def test_stale_versions_are_ignored() -> None:
    entry, _ = apply_upsert(None, state(version=3), now=T0)
    again, cancel = apply_upsert(entry, state(version=2, interval=99), now=T0)
    assert again is entry and cancel == []


def test_advance_counts_and_plans_the_next_fire() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    assert entry is not None
    fire = entry.next_fire()
    assert fire is not None
    after = advance(entry, fire)
    assert after.run_count == 1 and after.last_nominal == fire.nominal
    assert after.next_nominal == fire.nominal + timedelta(seconds=10)
    assert [a.run_id for a in after.announced] == [planned_run_id(entry.schedule.id, fire.nominal)]


def test_pause_inside_the_lookahead_window_cancels_the_announced_run() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    assert entry is not None
    fire = entry.next_fire()
    assert fire is not None
    announced = advance(entry, fire)
    paused, cancel = apply_upsert(
        announced,
        state(version=2, status="paused", updated=fire.nominal),
        now=fire.planned - timedelta(milliseconds=50),
    )
    assert paused is not None and paused.next_nominal is None
    assert [c.nominal for c in cancel] == [fire.nominal]
    assert paused.run_count == 0, "a cancelled run is not counted"
    late, late_cancel = apply_upsert(
        announced, state(version=2, status="paused"), now=fire.planned + timedelta(milliseconds=50)
    )
    assert late_cancel == [], "a run whose time has passed is not cancelled"


def test_non_timing_edit_keeps_the_pending_fire() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    assert entry is not None
    renamed = state(version=2, updated=T0 + timedelta(seconds=5)).model_copy(update={"name": "renamed"})
    after, cancel = apply_upsert(entry, renamed, now=T0 + timedelta(seconds=5))
    assert after is not None and after.next_nominal == entry.next_nominal and cancel == []
    assert after.schedule.name == "renamed"


def test_resume_continues_from_the_next_fire_after_resume() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    paused, _ = apply_upsert(entry, state(version=2, status="paused"), now=T0)
    resumed_at = T0 + timedelta(seconds=95)
    resumed, _ = apply_upsert(paused, state(version=3, updated=resumed_at), now=resumed_at)
    assert resumed is not None and resumed.next_nominal == T0 + timedelta(seconds=100)


def test_delete_leaves_a_marker_that_stops_fires_and_stale_upserts() -> None:
    entry, _ = apply_upsert(None, state(version=1), now=T0)
    deleted, _ = apply_delete(entry, 2, now=T0)
    assert deleted is not None and deleted.schedule.status is ScheduleStatus.DELETED and deleted.next_nominal is None
    again, _ = apply_upsert(deleted, state(version=1), now=T0)
    assert again is deleted
    assert entry is not None and entry.next_nominal is not None
    assert fire_is_current(entry, 1, entry.next_nominal)
    assert not fire_is_current(deleted, 1, entry.next_nominal) and not fire_is_current(entry, 2, entry.next_nominal)


def test_offsets_commit_below_the_lowest_unfinished_record() -> None:
    tracker = OffsetTracker()
    assert tracker.committable() is None
    for offset in (5, 6, 7):
        tracker.started(offset)
    tracker.finished(6)
    tracker.finished(7)
    assert tracker.committable() == 5
    tracker.finished(5)
    assert tracker.committable() == 8


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    header = sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, [secret])
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, header, secret)
    assert not verify("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body, header, secret)
    two = sign("m", 1, b"", [secret, "whsec_" + "A" * 44])
    assert len(two.split()) == 2 and verify("m", 1, b"", two, secret)


def _late_entry(policy: str, missed: int, grace: int = 1) -> tuple[object, datetime]:
    from services.planner.entries import PlanEntry

    sched = state(interval=2).model_copy(update={"misfire_policy": policy, "misfire_grace_seconds": grace})
    entry, _ = apply_upsert(None, sched, now=T0)
    assert isinstance(entry, PlanEntry)
    # The first fire is T0+2 s; at `now`, `missed` fires are later than the grace period, and the next is not due.
    now = T0 + timedelta(seconds=2 * missed + grace + 0.5)
    return entry, now


def test_misfire_policies() -> None:
    from services.planner.entries import FIRE_ALL_BOUND, PlanEntry, advance_past, plan_misfire

    for policy, fired, skipped in (("fire_once", 1, 4), ("fire_all", 5, 0), ("skip", 0, 5)):
        entry, now = _late_entry(policy, 5)
        assert isinstance(entry, PlanEntry)
        got = plan_misfire(entry, now)
        assert got is not None, policy
        assert len(got.fire) == fired and got.skipped_count == skipped, policy
        assert got.last_considered == T0 + timedelta(seconds=10)
        if policy == "fire_once":
            assert got.fire[0].nominal == T0 + timedelta(seconds=10), "fire_once runs the latest missed time"
            assert (got.skipped_first, got.skipped_last) == (T0 + timedelta(seconds=2), T0 + timedelta(seconds=8))
        after = advance_past(entry, got.last_considered, len(got.fire))
        assert after.next_nominal == T0 + timedelta(seconds=12) and after.run_count == fired
    entry, now = _late_entry("fire_all", FIRE_ALL_BOUND + 50)
    assert isinstance(entry, PlanEntry)
    bounded = plan_misfire(entry, now)
    assert bounded is not None and len(bounded.fire) == FIRE_ALL_BOUND and bounded.skipped_count == 50


def test_fires_already_due_within_grace_run_with_the_catch_up() -> None:
    """Decided with the misfires, not a turn later, when a few milliseconds could make it one more misfire."""
    from services.planner.entries import PlanEntry, plan_misfire

    entry, _ = _late_entry("skip", 5)
    assert isinstance(entry, PlanEntry)
    got = plan_misfire(entry, T0 + timedelta(seconds=12, milliseconds=900))  # T0+12 is 0.9 s late: within grace
    assert got is not None
    assert [f.nominal for f in got.fire] == [T0 + timedelta(seconds=12)]
    assert (got.skipped_count, got.skipped_first, got.skipped_last) == (
        5,
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=10),
    )
    assert got.last_considered == T0 + timedelta(seconds=12)


def test_a_fire_within_grace_is_not_a_misfire() -> None:
    from services.planner.entries import PlanEntry, plan_misfire

    entry, _ = _late_entry("skip", 0, grace=60)
    assert isinstance(entry, PlanEntry)
    assert plan_misfire(entry, T0 + timedelta(seconds=30)) is None


def test_overlap_decisions() -> None:
    from services.planner.entries import Overlap, PlanEntry, finished, opened, overlap_decision, skip_over

    for policy, second in (("allow", Overlap.FIRE), ("skip", Overlap.SKIP), ("buffer_one", Overlap.BUFFER)):
        sched = ScheduleState.model_validate({**state().model_dump(), "overlap_policy": policy})
        entry, _ = apply_upsert(None, sched, now=T0)
        assert isinstance(entry, PlanEntry)
        fire = entry.next_fire()
        assert fire is not None
        assert overlap_decision(entry, T0) is Overlap.FIRE
        run_id = planned_run_id(entry.schedule.id, fire.nominal)
        running = opened(advance(entry, fire), run_id, fire.nominal)
        assert overlap_decision(running, T0 + timedelta(seconds=20)) is second, policy
        if second is Overlap.BUFFER:
            nxt = running.next_fire()
            assert nxt is not None
            held = skip_over(running, nxt, buffer=True)
            assert overlap_decision(held, T0 + timedelta(seconds=30)) is Overlap.SKIP, "at most one is buffered"
            freed, to_run = finished(held, run_id)
            assert to_run == nxt and freed.open_run is None and freed.run_count == 2
        # A lost outcome does not block the schedule forever.
        assert overlap_decision(running, T0 + timedelta(days=2)) is Overlap.FIRE


def test_an_overlap_is_decided_at_the_fire_time_not_when_the_run_would_be_announced() -> None:
    from services.planner.entries import opened, overlap_wait

    for policy in ("skip", "buffer_one"):
        entry, _ = apply_upsert(None, state().model_copy(update={"overlap_policy": policy}), now=T0)
        assert entry is not None
        first = entry.next_fire()
        assert first is not None
        running = opened(advance(entry, first), planned_run_id(entry.schedule.id, first.nominal), first.nominal)
        nxt = running.next_fire()
        assert nxt is not None
        # Announcing five seconds ahead would skip (or buffer) a fire whose run may yet end before its time.
        assert overlap_wait(running, nxt.planned - timedelta(seconds=5)) == nxt.planned, policy
        # At its time the usual decision applies.
        assert overlap_wait(running, nxt.planned) is None
        # With no open run the fire is announced ahead as usual.
        assert overlap_wait(advance(entry, first), nxt.planned - timedelta(seconds=5)) is None
    allow, _ = apply_upsert(None, state(), now=T0)
    assert allow is not None
    fire = allow.next_fire()
    assert fire is not None
    busy = opened(advance(allow, fire), planned_run_id(allow.schedule.id, fire.nominal), fire.nominal)
    after = busy.next_fire()
    assert after is not None
    assert overlap_wait(busy, after.planned - timedelta(seconds=5)) is None, "allow never waits"


def test_every_run_announced_inside_the_window_is_cancelled() -> None:
    entry, _ = apply_upsert(None, state(interval=1), now=T0)
    assert entry is not None
    first = entry.next_fire()
    assert first is not None
    one = advance(entry, first)
    second = one.next_fire()
    assert second is not None
    two = advance(one, second)
    # Both runs were announced ahead of their time; a pause before either is due takes both back.
    paused, cancels = apply_upsert(two, state(version=2, status="paused"), now=first.planned - timedelta(seconds=1))
    assert sorted(c.nominal for c in cancels) == [first.nominal, second.nominal]
    assert paused is not None and paused.run_count == 0 and paused.next_nominal is None
    # After a resume the first of them is planned again rather than lost.
    resumed, _ = apply_upsert(paused, state(version=3, interval=1), now=first.planned - timedelta(seconds=1))
    assert resumed is not None and resumed.next_nominal == first.nominal


def test_a_stored_cursor_and_definition_join_back_into_the_entry() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    assert entry is not None and entry.next_fire() is not None
    fired = advance(entry, entry.next_fire())  # type: ignore[arg-type]
    stored = Cursor.model_validate_json(cursor_of(fired).model_dump_json())
    assert join(fired.schedule, stored) == fired


def test_a_cursor_older_than_its_definition_is_planned_again() -> None:
    entry, _ = apply_upsert(None, state(), now=T0)
    assert entry is not None and entry.next_fire() is not None
    fired = advance(entry, entry.next_fire())  # type: ignore[arg-type]
    # The definition moved to version 2 (every 60 s from T0+15 s) but the crash lost the cursor written after it.
    newer = state(version=2, interval=60, updated=T0 + timedelta(seconds=15))
    joined = join(newer, cursor_of(fired))
    assert joined.version == 2 and joined.run_count == 1
    assert joined.next_nominal == T0 + timedelta(seconds=60)
    # No cursor at all: planned from the change, as a first upsert is.
    fresh = join(newer, None)
    assert fresh.run_count == 0 and fresh.next_nominal == T0 + timedelta(seconds=60)
    gone = join(state(version=3, status="deleted"), cursor_of(fired))
    assert gone.next_fire() is None


def test_overlap_skip_reports_the_fire_it_drops_and_asks_for_the_run_end() -> None:
    from services.planner.firing import finish, fire

    busy = state().model_copy(update={"overlap_policy": "skip"})
    entry, _ = apply_upsert(None, busy, now=T0)
    assert entry is not None and entry.next_fire() is not None
    first = fire(entry, T0 + timedelta(seconds=10))
    assert len(first.due) == 1 and first.due[0].report_finish and not first.skipped
    assert first.after.open_run == first.due[0].run_id
    second = fire(first.after, T0 + timedelta(seconds=20))
    assert not second.due and len(second.skipped) == 1
    assert second.skipped[0].first_nominal == T0 + timedelta(seconds=20)
    ended = finish(second.after, first.due[0].run_id, T0 + timedelta(seconds=21))
    assert ended.after.open_run is None and not ended.due
    # A schedule that allows overlaps never asks the executor to report back.
    plain, _ = apply_upsert(None, state(), now=T0)
    assert plain is not None and not fire(plain, T0 + timedelta(seconds=10)).due[0].report_finish


def test_buffer_one_runs_the_held_fire_when_the_open_run_ends() -> None:
    from services.planner.firing import finish, fire

    entry, _ = apply_upsert(None, state().model_copy(update={"overlap_policy": "buffer_one"}), now=T0)
    assert entry is not None
    first = fire(entry, T0 + timedelta(seconds=10))
    held = fire(first.after, T0 + timedelta(seconds=20))
    assert not held.due and not held.skipped and held.after.buffered is not None
    ended = finish(held.after, first.due[0].run_id, T0 + timedelta(seconds=25))
    assert [r.nominal_time for r in ended.due] == [T0 + timedelta(seconds=20)]
    assert ended.due[0].planned_time == T0 + timedelta(seconds=25)
    assert ended.after.open_run == ended.due[0].run_id and ended.after.buffered is None


def test_the_result_probe_spots_replayed_successes() -> None:
    from shared.events import RunAttemptFailed, RunSucceeded, encode_event
    from shared.events.probe import ResultProbe
    from shared.events.runs import RunOutcomeData, RunStatus, Trigger

    def outcome(status: RunStatus, trigger: Trigger) -> RunOutcomeData:
        return RunOutcomeData(
            run_id=uuid.uuid4(),
            schedule_id=uuid.uuid4(),
            tenant_id="t",
            nominal_time=T0,
            trigger=trigger,
            attempt=1,
            status=status,
            worker="w",
            started_at=T0,
            finished_at=T0,
            duration_ms=1,
        )

    def probe(event: object) -> ResultProbe:
        return ResultProbe.model_validate_json(encode_event(event))  # type: ignore[arg-type]

    replayed = RunSucceeded(subject="s", tenant="t", time=T0, data=outcome(RunStatus.SUCCEEDED, Trigger.REPLAY))
    assert probe(replayed).is_replay_success()
    planned = RunSucceeded(subject="s", tenant="t", time=T0, data=outcome(RunStatus.SUCCEEDED, Trigger.SCHEDULE))
    assert not probe(planned).is_replay_success()
    failed = RunAttemptFailed(subject="s", tenant="t", time=T0, data=outcome(RunStatus.RETRYING, Trigger.REPLAY))
    assert not probe(failed).is_replay_success()
