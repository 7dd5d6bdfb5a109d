"""Fault scenarios against the whole stack as real processes, under load, with a recording sink."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from bench.scenarios import Env, chime_stack, create_schedules
from bench.sink import BenchSink
from chaos.invariants import Verdict, judge
from services.devstack.kafka import LocalKafka
from services.devstack.postgres import start_postgres, stop_postgres
from services.devstack.stack import PG_DIR
from shared.settings import Settings
from tests.e2e.stack import Stack, grid
from tests.integration.helpers import auth, schedule_body

# The order services are killed in; each comes back before the next goes.
KILL_ORDER = ("api", "recorder", "planner", "executor", "dlq")


@dataclass(frozen=True, slots=True)
class Load:
    """How much traffic a run puts through the stack while faults happen."""

    intervals: int
    oneoffs: int
    tenants: int
    min_interval_s: int
    max_interval_s: int
    down_s: float
    between_s: float

    @classmethod
    def quick(cls) -> Load:
        return cls(intervals=150, oneoffs=20, tenants=3, min_interval_s=1, max_interval_s=3, down_s=1, between_s=5)

    @classmethod
    def full(cls) -> Load:
        return cls(intervals=2000, oneoffs=200, tenants=8, min_interval_s=2, max_interval_s=5, down_s=3, between_s=15)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: T201


@dataclass
class _Plan:
    """What was created: interval schedules (id → (anchor, interval)) and one-offs (id → run_at)."""

    intervals: dict[str, tuple[datetime, int]]
    oneoffs: dict[str, datetime]
    tenant_of: dict[str, str]

    def expected(self, start: datetime, end: datetime) -> dict[str, set[datetime]]:
        """Every nominal time in [start, end) of every schedule."""
        out: dict[str, set[datetime]] = {}
        last = end - timedelta(milliseconds=1)
        for sid, (anchor, interval) in self.intervals.items():
            out[sid] = set(grid(start, last, interval, anchor))
        for sid, run_at in self.oneoffs.items():
            out[sid] = {run_at} if start <= run_at < end else set()
        return out


async def _create(settings: Settings, stack: Stack, sink: BenchSink, load: Load) -> _Plan:
    rng = random.Random(7)  # noqa: S311 - a repeatable load, not a secret
    tenants = [f"chaos-{i}" for i in range(load.tenants)]
    url = f"{sink.url}/hook"
    # Every missed fire must still be delivered after a restart, however long the outage: fire_all, 10 min grace.
    policy: dict[str, Any] = {"misfire_policy": "fire_all", "misfire_grace_seconds": 600}
    cadences = [rng.randint(load.min_interval_s, load.max_interval_s) for _ in range(load.intervals)]
    bodies = [schedule_body(interval_seconds=c, payload={"url": url}, **policy) for c in cadences]
    anchors = await create_schedules(settings, stack, bodies, tenants)
    intervals = {sid: (anchor, cadences[i]) for i, (sid, anchor) in enumerate(anchors.items())}
    tenant_of = {sid: tenants[i % len(tenants)] for i, sid in enumerate(anchors)}
    # One-offs land inside the fault window, spread over it.
    now = datetime.now(UTC).replace(microsecond=0)
    span = int(len(KILL_ORDER) * (load.down_s + load.between_s + 4))
    run_ats = [now + timedelta(seconds=15 + rng.randint(0, span)) for _ in range(load.oneoffs)]
    oneoff_bodies = [
        schedule_body(type="oneoff", run_at=t.isoformat(), payload={"url": url}, **policy) | {"interval_seconds": None}
        for t in run_ats
    ]
    created = await create_schedules(settings, stack, oneoff_bodies, tenants)
    oneoffs = dict(zip(created, run_ats, strict=True))
    tenant_of |= {sid: tenants[i % len(tenants)] for i, sid in enumerate(created)}
    return _Plan(intervals, oneoffs, tenant_of)


async def _kill_each(stack: Stack, load: Load) -> None:
    for name in KILL_ORDER:
        say(f"kill -9 {name}")
        proc = stack.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(proc.wait, 10)
        await asyncio.sleep(load.down_s)
        stack.start(name)
        await stack.wait_healthy(name, timeout=120)
        say(f"{name} is back")
        await asyncio.sleep(load.between_s)


async def _delete_some(settings: Settings, stack: Stack, plan: _Plan, share: float) -> dict[str, datetime]:
    """Delete a share of the interval schedules; returns when each delete was acknowledged."""
    doomed = list(plan.intervals)[:: max(1, round(1 / share))]
    acked: dict[str, datetime] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        for sid in doomed:
            response = await api.delete(f"/api/schedules/{sid}", headers=auth(settings, plan.tenant_of[sid]))
            response.raise_for_status()
            acked[sid] = datetime.now(UTC)
    return acked


async def kill_each_service(env: Env, sink: BenchSink, load: Load) -> Verdict:
    """SIGKILL every service in turn under load, restart it, then delete some schedules: nothing may be lost."""
    return await _under_load("kill each service", env, sink, load, _kill_each)


async def kill_broker_and_database(env: Env, sink: BenchSink, load: Load) -> Verdict:
    """SIGKILL the local Kafka broker and start it again, then restart Postgres, under load."""

    async def faults(stack: Stack, load: Load) -> None:
        kafka = LocalKafka()
        pid = int((kafka.state_dir / "kafka.pid").read_text().strip())
        say("kill -9 kafka")
        os.kill(pid, signal.SIGKILL)
        await asyncio.sleep(load.down_s)
        await asyncio.to_thread(kafka.start)
        say("kafka is back")
        await _all_healthy(stack)
        await asyncio.sleep(load.between_s)
        say("restart postgres")
        await asyncio.to_thread(stop_postgres, PG_DIR)
        await asyncio.sleep(load.down_s)
        await asyncio.to_thread(start_postgres, PG_DIR)
        say("postgres is back")
        await _all_healthy(stack)
        await asyncio.sleep(load.between_s)

    return await _under_load("kill kafka, restart postgres", env, sink, load, faults)


async def _all_healthy(stack: Stack) -> None:
    for name in KILL_ORDER:
        await stack.wait_healthy(name, timeout=180)


async def _under_load(
    scenario: str, env: Env, sink: BenchSink, load: Load, faults: Callable[[Stack, Load], Awaitable[None]]
) -> Verdict:
    async with chime_stack(env) as (settings, stack):
        say(f"{scenario}: creating {load.intervals} interval schedules and {load.oneoffs} one-offs")
        plan = await _create(settings, stack, sink, load)
        await asyncio.sleep(2 * load.max_interval_s + 2)
        start = datetime.now(UTC)
        await faults(stack, load)
        end = datetime.now(UTC)
        say(f"{scenario}: deleting a tenth of the interval schedules")
        deleted = await _delete_some(settings, stack, plan, 0.1)
        expected = plan.expected(start, end)
        ids = set(plan.intervals) | set(plan.oneoffs)

        def window() -> list[Any]:
            return [a for a in sink.arrivals if a.schedule_id in ids and start <= a.nominal < end]

        wanted = sum(len(v) for v in expected.values())
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len({(a.schedule_id, a.nominal) for a in window()}) < wanted:  # noqa: ASYNC110
            await asyncio.sleep(0.5)
        # Deliveries for deleted schedules keep being watched for a few seconds after the deletes.
        await asyncio.sleep(max(0.0, 5 - (datetime.now(UTC) - max(deleted.values())).total_seconds()))
        arrivals = [a for a in sink.arrivals if a.schedule_id in ids and a.nominal >= start]
        verdict = judge(scenario, arrivals, expected, deleted)
        sink.arrivals[:] = [a for a in sink.arrivals if a.schedule_id not in ids]
        say(f"{scenario}: {verdict.delivered:,} of {verdict.expected:,} delivered, {verdict.lost} lost")
        return verdict
