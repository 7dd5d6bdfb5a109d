"""Firing, overlap, pauses, misfires and rebalances (planners and executors joining and leaving the group) with
the planner and executors in the test's process (``tests/integration/inprocess.py``): the real broker, database and
HTTP, in seconds rather than a stack's minutes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from services.api.app import create_app
from services.executor.worker import Executor
from services.planner.app import Planner
from shared.events import RunSkipped, decode_event
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import RUNS_RESULTS, topic_name
from tests.e2e.stack import RecordingSink
from tests.integration.helpers import auth, installation, read_all, schedule_body
from tests.integration.inprocess import running_executor, running_planner, wait_until

T = TypeVar("T")


@dataclass
class World:
    settings: Settings
    api: httpx.AsyncClient
    sink: RecordingSink
    planner: Planner
    executor: Executor
    _planner_scope: contextlib.AsyncExitStack

    async def create(self, tenant: str, path: str, **overrides: Any) -> str:
        body = schedule_body(payload={"url": f"{self.sink.url}{path}", "timeout_seconds": 10}, **overrides)
        response = await self.api.post("/api/schedules", json=body, headers=auth(self.settings, tenant))
        assert response.status_code == 201, response.text
        schedule_id: str = response.json()["id"]
        return schedule_id

    async def planner_outage(self, seconds: float) -> None:
        """Stop the planner, wait ``seconds``, and start a new one (with a new data directory: it recovers its
        state from the changelogs, as a planner moved to another node does)."""
        await self._planner_scope.aclose()
        await asyncio.sleep(seconds)
        self.planner = await self._planner_scope.enter_async_context(running_planner(self.settings))


@pytest.fixture(scope="module")
async def world(stack_env: dict[str, str]) -> AsyncIterator[World]:
    """A database and topics of their own (the API's outbox relay must publish to this module's topics only), the
    API, a sink, a planner and an executor, for every test of the module."""
    # Runs are announced a second ahead rather than five, so a planner outage of a few seconds misses fires.
    async with installation(stack_env, planner_lookahead_ms=1_000) as settings:
        sink = RecordingSink()
        await sink.start()
        app = create_app(settings)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://chime.test") as api,
                contextlib.AsyncExitStack() as planner_scope,
                running_executor(settings) as executor,
            ):
                planner = await planner_scope.enter_async_context(running_planner(settings))
                yield World(settings, api, sink, planner, executor, planner_scope)
        finally:
            await sink.stop()


def _nominal(arrival: Any) -> datetime:
    nominal: datetime = arrival.nominal
    return nominal


async def test_an_interval_schedule_fires_on_time_once_per_nominal_time(world: World, tenant: str) -> None:
    schedule_id = await world.create(tenant, "/steady", interval_seconds=1)
    arrivals = await world.sink.wait_for(schedule_id, 4, timeout=20)
    assert len(arrivals) >= 4
    nominals = [_nominal(a) for a in arrivals]
    assert len(set(nominals)) == len(nominals), "a nominal time was called twice"
    assert all(b - a == timedelta(seconds=1) for a, b in zip(nominals, nominals[1:], strict=False))
    # Called at its time: well within a second of it (the executor holds each run until then).
    assert all(timedelta(0) <= a.received - _nominal(a) < timedelta(milliseconds=500) for a in arrivals)
    # The planner's own record of the schedule agrees with what the sink saw.
    entry = world.planner.entry(schedule_id.encode())
    assert entry is not None and entry.run_count >= len(arrivals)
    assert entry.last_nominal is not None and entry.last_nominal >= nominals[-1]
    assert utcnow() - nominals[-1] < timedelta(seconds=5)


async def test_overlap_skip_starts_no_run_while_the_last_is_open(world: World, tenant: str) -> None:
    slow = 2.2
    schedule_id = await world.create(tenant, f"/slow?delay={slow}", interval_seconds=1, overlap_policy="skip")
    arrivals = await world.sink.wait_for(schedule_id, 3, timeout=20)
    assert len(arrivals) >= 3
    starts = sorted(a.received for a in arrivals)
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    # Each call starts only once the one before it has answered; the fires in between were skipped, not queued.
    assert min(gaps) >= slow - 0.2, gaps
    assert max(gaps) < slow + 1.5, gaps
    await world.api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(world.settings, tenant))


async def test_a_pause_cancels_runs_already_announced(world: World, tenant: str) -> None:
    schedule_id = await world.create(tenant, "/paused", interval_seconds=1)
    assert len(await world.sink.wait_for(schedule_id, 2, timeout=20)) >= 2
    response = await world.api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(world.settings, tenant))
    assert response.status_code == 200, response.text
    answered = utcnow()

    # The planner announces runs ahead of their time: the ones already announced are withdrawn, not called.
    def withdrawn() -> bool:
        entry = world.planner.entry(schedule_id.encode())
        return (
            entry is not None
            and entry.schedule.status.value == "paused"
            and all(a.planned <= answered for a in entry.announced)
        )

    await wait_until(withdrawn, 5, "the planner withdrew what it had announced")
    called = len(world.sink.for_schedule(schedule_id))
    await world.sink.wait_until(lambda: len(world.sink.for_schedule(schedule_id)) > called, timeout=2.5)
    late = [a for a in world.sink.for_schedule(schedule_id) if _nominal(a) > answered]
    assert late == [], f"called after the pause was answered at {answered}: {[a.nominal for a in late]}"


async def _every_fire_called_across(
    world: World, tenant: str, member: AbstractAsyncContextManager[T], holds: Callable[[T], bool]
) -> int:
    """Eight schedules fire every second while ``member`` joins the group, works for a while, and leaves (its
    partitions go back, with what it held). Every fire in that time is called, late rather than never; returns how
    many calls repeated one (the same webhook-id: allowed around a partition move)."""
    schedules = [await world.create(tenant, "/rebalanced", interval_seconds=1) for _ in range(8)]
    assert await world.sink.wait_until(lambda: all(world.sink.for_schedule(s) for s in schedules), timeout=20)
    start = utcnow() + timedelta(seconds=1)
    async with member as joined:
        await wait_until(lambda: holds(joined), 30, "the new member holds partitions")
        await asyncio.sleep(4)
    end = utcnow() + timedelta(seconds=1)
    firsts = {s: min(_nominal(a) for a in world.sink.for_schedule(s)) for s in schedules}
    due = {
        (s, first + timedelta(seconds=n))
        for s, first in firsts.items()
        for n in range(int((end - first).total_seconds()) + 1)
        if start <= first + timedelta(seconds=n) <= end
    }
    assert len(due) >= len(schedules) * 5

    def called() -> set[tuple[str, datetime]]:
        return {(s, _nominal(a)) for s in schedules for a in world.sink.for_schedule(s)}

    await world.sink.wait_until(lambda: due <= called(), timeout=30)
    for schedule_id in schedules:
        await world.api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(world.settings, tenant))
    missed = sorted(due - called())
    assert missed == [], f"fires never called across the rebalances: {missed}"
    return sum(len(world.sink.for_schedule(s)) for s in schedules) - len(called())


async def test_executors_joining_and_leaving_miss_no_due_run(world: World, tenant: str) -> None:
    # The runs the first executor held when the second joined, and those the second held when it left, are called
    # by the partitions' next owners.
    repeats = await _every_fire_called_across(
        world, tenant, running_executor(world.settings, "executor-2"), lambda e: bool(e._offsets.trackers)
    )
    # A move must not repeat everything held.
    assert repeats <= 8 * 3, f"{repeats} repeated calls"


async def test_misfire_policies_after_a_planner_outage(world: World, tenant: str) -> None:
    created = {
        policy: await world.create(
            tenant, "/misfire", interval_seconds=1, misfire_policy=policy, misfire_grace_seconds=1
        )
        for policy in ("fire_once", "fire_all", "skip")
    }
    for schedule_id in created.values():
        assert len(await world.sink.wait_for(schedule_id, 2, timeout=20)) >= 2
    await world.planner_outage(5)  # beyond the runs announced ahead, fires are missed, most by more than the grace
    back = utcnow()
    assert await world.sink.wait_until(
        lambda: all(any(_nominal(a) > back for a in world.sink.for_schedule(s)) for s in created.values()), timeout=20
    ), "a schedule did not fire again after the outage"
    for schedule_id in created.values():
        await world.api.post(f"/api/schedules/{schedule_id}/pause", headers=auth(world.settings, tenant))
    keys = {s.encode() for s in created.values()}
    skipped: dict[str, list[RunSkipped]] = {}
    for record in await read_all(world.settings, topic_name(world.settings, RUNS_RESULTS)):
        event = decode_event(record.value) if record.key in keys else None
        if isinstance(event, RunSkipped):
            skipped.setdefault(str(event.data.schedule_id), []).append(event)
    for policy, schedule_id in created.items():
        delivered = {_nominal(a) for a in world.sink.for_schedule(schedule_id)}
        first = min(delivered)
        expected = {first + timedelta(seconds=n) for n in range(int((back - first).total_seconds()) + 1)}
        events = skipped.get(schedule_id, [])
        if policy == "fire_all":
            assert events == [], "fire_all skipped something"
            assert expected <= delivered, f"fire_all lost {sorted(expected - delivered)}"
            continue
        assert len(events) == 1, f"{policy}: one run.skipped per outage, got {len(events)}"
        data = events[0].data
        assert data.reason.value == "misfire"
        in_skip = {t for t in expected if data.first_nominal <= t <= data.last_nominal}
        assert len(in_skip) == data.count and not (in_skip & delivered)
        assert expected <= delivered | in_skip, "a nominal time was neither called nor reported skipped"
        catch_up = data.last_nominal + timedelta(seconds=1)
        if policy == "fire_once":
            assert catch_up in delivered, "fire_once did not run the latest missed time"
        else:
            assert data.count >= 2


async def test_a_planner_joining_and_leaving_misses_no_fire(world: World, tenant: str) -> None:
    # Half the partitions move to the second planner with their tables, and back when it leaves.
    await _every_fire_called_across(
        world, tenant, running_planner(world.settings, "planner-2"), lambda p: bool(p.partitions_held())
    )
