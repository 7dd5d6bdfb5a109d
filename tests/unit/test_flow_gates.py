"""Flow-control bookkeeping: the gate's order and limits, the rate window, and the default per-executor slots."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry, Counter

from services.executor.flows import RATE_WINDOW_GUARD_S, FlowGate, FlowLimit, LocalFlows
from shared.events.schedule import DeliverySpec


def test_the_flow_is_the_flow_key_or_the_host_with_its_port() -> None:
    assert DeliverySpec(url="https://API.example.com/a?b=1").flow == "api.example.com"
    assert DeliverySpec(url="http://127.0.0.1:8080/hook").flow == "127.0.0.1:8080"
    assert DeliverySpec(url="http://127.0.0.1:8080/hook", flow_key="billing").flow == "billing"


def test_rate_windows() -> None:
    assert FlowLimit(5).rate_window is None
    assert FlowLimit(5, 20).rate_window == (20, 1 + RATE_WINDOW_GUARD_S)
    n, seconds = FlowLimit(5, 0.5).rate_window or (0, 0.0)
    assert (n, seconds) == (1, 2 + RATE_WINDOW_GUARD_S)
    n, seconds = FlowLimit(5, 2.5).rate_window or (0, 0.0)
    assert n == 2 and seconds == pytest.approx(0.8 + RATE_WINDOW_GUARD_S)


def test_runs_leave_in_nominal_order_within_the_concurrency() -> None:
    gate: FlowGate[str] = FlowGate()
    limit = FlowLimit(2)
    for nominal, attempt, name in ((30, 1, "c"), (10, 2, "a-retry"), (10, 1, "a"), (20, 1, "b")):
        gate.push(nominal, attempt, name)
    started = []
    while gate.blocked(limit, 0.0) is None:
        started.append(gate.take(limit, 0.0)[0])
    assert started == ["a", "a-retry"]
    assert gate.blocked(limit, 0.0) == "concurrency"
    gate.finished()
    assert gate.take(limit, 0.0)[0] == "b"
    gate.finished()
    gate.finished()
    assert gate.take(limit, 0.0)[0] == "c"
    gate.finished()
    assert gate.idle(limit, 0.0)


def test_the_rate_window_never_lets_more_than_n_start_in_any_window() -> None:
    gate: FlowGate[int] = FlowGate()
    limit = FlowLimit(1000, 20)
    for i in range(100):
        gate.push(float(i), 1, i)
    starts: list[float] = []
    now = 0.0
    while gate.waiting:
        if gate.blocked(limit, now) is None:
            gate.take(limit, now)
            gate.finished()
            starts.append(now)
        else:
            assert gate.blocked(limit, now) == "rate"
            now += max(gate.rate_wait(limit, now), 1e-6)
    for first in starts:
        assert sum(1 for t in starts if first <= t < first + 1.0) <= 20
    # It is a limit, not a pace below it: 100 calls at 20/s take about 4 windows.
    assert starts[-1] == pytest.approx(4 * (1 + RATE_WINDOW_GUARD_S), abs=0.01)
    assert not gate.idle(limit, starts[-1])
    assert gate.idle(limit, starts[-1] + 1.1)


def test_a_call_that_began_late_moves_the_window_and_a_handover_fills_it() -> None:
    gate: FlowGate[int] = FlowGate()
    limit = FlowLimit(10, 1)
    gate.push(0.0, 1, 0)
    gate.push(1.0, 1, 1)
    _, began = gate.take(limit, 0.0)
    gate.finished()
    began[0] = 0.5  # the call left half a second after it was let go
    assert gate.rate_wait(limit, 1.0) == pytest.approx(0.5 + RATE_WINDOW_GUARD_S)
    fresh: FlowGate[int] = FlowGate()
    fresh.seed(limit, 3.0)
    fresh.push(0.0, 1, 0)
    assert fresh.blocked(limit, 3.5) == "rate"
    assert fresh.blocked(limit, 4.0 + RATE_WINDOW_GUARD_S) is None


async def test_the_default_slots_are_handed_over_in_arrival_order() -> None:
    throttled = Counter("t", "t", ["limit"], registry=CollectorRegistry())
    flows = LocalFlows(2, throttled)
    flow = ("tenant", "host")
    order: list[int] = []
    release = asyncio.Event()

    async def call(i: int) -> None:
        await flows.acquire(flow)
        order.append(i)
        try:
            await release.wait()
        finally:
            flows.release(flow)

    tasks = [asyncio.create_task(call(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == [0, 1]
    assert throttled.labels("concurrency")._value.get() == 3
    tasks[3].cancel()  # a waiter that gives up does not take a slot
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 1, 2, 4]
    assert flows._in_flight == {} and flows._waiters == {}
    # Another flow is never held by this one's queue.
    await asyncio.wait_for(flows.acquire(("tenant", "other")), 0.1)
