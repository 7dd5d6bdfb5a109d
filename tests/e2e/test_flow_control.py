"""Flow limits hold across two executor processes: never more calls in flight or per second than the limit, nothing
lost, and another flow of the same tenant keeps its pace."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import httpx

from shared.settings import Settings
from tests.e2e.stack import RecordingSink, Stack
from tests.e2e.stack import eventually as until
from tests.integration.helpers import auth, schedule_body

_LIMITED = 200
_CONCURRENCY = 5
_PER_SECOND = 20


async def _create(api: httpx.AsyncClient, headers: dict[str, str], bodies: list[dict[str, object]]) -> list[str]:
    ids: list[str] = []
    for start in range(0, len(bodies), 20):
        answers = await asyncio.gather(
            *(api.post("/api/schedules", json=b, headers=headers) for b in bodies[start : start + 20])
        )
        for answer in answers:
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


async def test_a_flow_limit_holds_across_two_executors(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    settings = e2e_settings
    headers = auth(settings, tenant)
    replica = stack.add_replica("executor", 2)
    stack.start(replica)
    try:
        await stack.wait_healthy(replica)
        flow = f"limited-{uuid.uuid4().hex[:8]}"
        limit = {"max_concurrency": _CONCURRENCY, "max_per_second": _PER_SECOND}
        put = await api.put(f"/api/flow-limits/{flow}", json=limit, headers=headers)
        assert put.status_code == 201, put.text
        # The limit reaches every executor through chime.flow-limits, and the second executor's flow consumer
        # settles into the group.
        await asyncio.sleep(2)

        label = uuid.uuid4().hex[:8]
        free = f"free-{label}"
        limited_bodies = [
            schedule_body(
                interval_seconds=1,
                labels={"flowtest": label},
                payload={"url": f"{sink.url}/{flow}/{i}?delay=0.15", "flow_key": flow},
            )
            for i in range(_LIMITED)
        ]
        free_bodies = [
            schedule_body(interval_seconds=1, labels={"flowtest": label}, payload={"url": f"{sink.url}/{free}/{i}"})
            for i in range(5)
        ]
        await _create(api, headers, free_bodies)
        limited_ids = await _create(api, headers, limited_bodies)

        def delivered() -> int:
            return sum(1 for a in sink.arrivals if a.path.startswith(f"/{flow}/"))

        async def enough_to_judge() -> bool:
            # Calls for a few seconds at the flow's rate; its backlog grows far faster (200 runs a second).
            return delivered() >= 3 * _PER_SECOND

        assert await until(enough_to_judge), f"only {delivered()} calls of the limited flow"
        paused = await api.post(
            "/api/schedules/bulk",
            json={"action": "pause", "selector": {"labels": {"flowtest": label}}},
            headers=headers,
        )
        assert paused.status_code == 200 and paused.json()["changed"] == _LIMITED + 5, paused.text

        # The backlog drains at the flow's rate; done when nothing more arrives for a while.
        last, quiet = -1, 0
        for _ in range(120):
            await asyncio.sleep(0.5)
            now = delivered()
            quiet = quiet + 1 if now == last else 0
            last = now
            if quiet >= 6:
                break
        limited = [a for a in sink.arrivals if a.path.startswith(f"/{flow}/")]

        assert sink.peak[flow] <= _CONCURRENCY, f"{sink.peak[flow]} calls in flight at once"
        times = sorted(a.received for a in limited)
        counts = [sum(1 for t in times[i:] if t < first + timedelta(seconds=1)) for i, first in enumerate(times)]
        busiest = max(counts)
        at = counts.index(busiest)
        offsets = [round((t - times[at]).total_seconds(), 3) for t in times[max(0, at - 25) : at + busiest + 5]]
        assert busiest <= _PER_SECOND, f"{busiest} calls within one second: {offsets}"
        repeats = [w for w, n in Counter(a.webhook_id for a in limited).items() if n > 1]
        assert not repeats, f"called twice: {repeats[:5]}"

        # The other flow was not held back by the limited one's backlog.
        free_calls = [a for a in sink.arrivals if a.path.startswith(f"/{free}/")]
        assert free_calls, "the other flow was not called"
        worst = max((a.received - a.nominal).total_seconds() for a in free_calls)
        assert worst < 1.0, f"the other flow was late by up to {worst:.3f}s"

        # Nothing lost: every run the planner announced either reached the sink or was withdrawn by the pause.
        called: dict[str, set[datetime]] = defaultdict(set)
        for arrival in limited:
            called[arrival.schedule_id].add(arrival.nominal)

        async def settled() -> bool:
            for schedule_id in limited_ids:
                response = await api.get(f"/api/schedules/{schedule_id}/runs", params={"limit": 500}, headers=headers)
                runs = response.json()["items"]
                if any(r["status"] not in ("succeeded", "skipped") for r in runs):
                    return False
                succeeded = {datetime.fromisoformat(r["scheduled_for"]) for r in runs if r["status"] == "succeeded"}
                assert succeeded == called[schedule_id], f"schedule {schedule_id}: runs and calls differ"
            return True

        assert await until(settled, timeout=30), "runs of the limited flow still open"
        assert sum(len(v) for v in called.values()) == len(limited)
    finally:
        assert stack.terminate(replica) == 0, stack.log_tail(replica)


async def test_a_flows_slot_passes_on_when_its_call_ends(
    api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    """A flow's concurrency is of calls: the next run's call starts when one ends, not once the ended call's outcome
    is in Kafka (the executor publishes outcomes in rounds of 100 ms, which would space these calls that far)."""
    headers = auth(e2e_settings, tenant)
    flow = f"serial-{uuid.uuid4().hex[:8]}"
    put = await api.put(f"/api/flow-limits/{flow}", json={"max_concurrency": 1}, headers=headers)
    assert put.status_code == 201, put.text
    await asyncio.sleep(2)  # the limit reaches the executor through chime.flow-limits
    await _serial_calls(api, sink, headers, flow)


async def test_the_default_flow_limit_passes_a_slot_on_when_its_call_ends(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings, tenant: str
) -> None:
    """A flow without a limit of its own gets ``CHIME_DEFAULT_FLOW_CONCURRENCY`` calls at once in each executor, and
    that slot too is the call's. The executor is restarted with a default of 1 for this test and without it after."""
    headers = auth(e2e_settings, tenant)
    stack.overrides["executor"] = {"CHIME_DEFAULT_FLOW_CONCURRENCY": "1"}
    try:
        assert stack.terminate("executor") == 0, stack.log_tail("executor")
        stack.start("executor")
        await stack.wait_healthy("executor")
        await _serial_calls(api, sink, headers, f"default-{uuid.uuid4().hex[:8]}")
    finally:
        stack.overrides.pop("executor", None)
        if "executor" in stack.procs:
            assert stack.terminate("executor") == 0, stack.log_tail("executor")
        stack.start("executor")
        await stack.wait_healthy("executor")


async def _serial_calls(api: httpx.AsyncClient, sink: RecordingSink, headers: dict[str, str], flow: str) -> None:
    """Twelve runs of ``flow`` (whose limit is one call at once) due at one instant: called one after another."""
    anchor = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    count = 12
    bodies = [
        schedule_body(
            interval_seconds=3600,
            start_at=anchor.isoformat(),
            payload={"url": f"{sink.url}/{flow}/{i}", "flow_key": flow},
        )
        for i in range(count)
    ]
    await _create(api, headers, bodies)

    def calls() -> list[datetime]:
        return sorted(a.received for a in sink.arrivals if a.path.startswith(f"/{flow}/"))

    async def all_called() -> bool:
        return len(calls()) >= count

    assert await until(all_called, timeout=30), f"{len(calls())} of {count} calls"
    times = calls()
    assert len(times) == count
    assert sink.peak[flow] == 1, f"{sink.peak[flow]} calls in flight at once"
    span = (times[-1] - times[0]).total_seconds()
    # One after another, each as soon as the one before has its answer; a round of 100 ms per call would take 1.1 s.
    assert span < 0.8, f"{count} serial calls took {span:.3f} s"
