"""Fault scenarios against the whole stack as real processes, under load, with a recording sink."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from aiokafka import AIOKafkaProducer

from bench.scale import read_runs_due
from bench.scenarios import Env, chime_stack, create_schedules
from bench.sink import Arrival
from chaos.invariants import Verdict, judge
from chaos.sink import Faults, FaultySink
from services.devstack.kafka import LocalKafka
from services.devstack.postgres import start_postgres, stop_postgres
from services.devstack.stack import PG_DIR
from shared.events import DlqEntry, decode_event
from shared.settings import Settings
from shared.topics import (
    DLQ_COMMANDS,
    FLOW_LIMITS,
    PLANNER_COMMANDS,
    QUARANTINE,
    RETRY_TOPICS,
    RUNS_DLQ,
    RUNS_DUE,
    RUNS_FLOW,
    RUNS_RESULTS,
    SCHEDULES,
    SIGNING_KEYS,
    TopicSpec,
    topic_name,
)
from tests.e2e.stack import Stack, grid
from tests.integration.helpers import auth, read_all, read_records, schedule_body

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


class Sink(Protocol):
    """A recording webhook receiver: where to call it, and the calls it accepted."""

    @property
    def url(self) -> str: ...

    arrivals: list[Arrival]


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
            # An interval schedule first fires one interval after its anchor (its creation, for these).
            first = max(start, anchor + timedelta(seconds=interval))
            out[sid] = set(grid(first, last, interval, anchor))
        for sid, run_at in self.oneoffs.items():
            out[sid] = {run_at} if start <= run_at < end else set()
        return out


async def _create(
    settings: Settings, stack: Stack, sink: Sink, load: Load, extra: dict[str, Any] | None = None
) -> _Plan:
    rng = random.Random(7)  # noqa: S311 - a repeatable load, not a secret
    tenants = [f"chaos-{i}" for i in range(load.tenants)]
    url = f"{sink.url}/hook"
    # Every missed fire must still be delivered after a restart, however long the outage: fire_all, 10 min grace.
    policy: dict[str, Any] = {"misfire_policy": "fire_all", "misfire_grace_seconds": 600, **(extra or {})}
    payload = {"url": url, **(policy.pop("payload", {}))}
    cadences = [rng.randint(load.min_interval_s, load.max_interval_s) for _ in range(load.intervals)]
    bodies = [schedule_body(interval_seconds=c, payload=payload, **policy) for c in cadences]
    anchors = await create_schedules(settings, stack, bodies, tenants)
    intervals = {sid: (anchor, cadences[i]) for i, (sid, anchor) in enumerate(anchors.items())}
    tenant_of = {sid: tenants[i % len(tenants)] for i, sid in enumerate(anchors)}
    # One-offs land inside the fault window, spread over it.
    now = datetime.now(UTC).replace(microsecond=0)
    span = int(len(KILL_ORDER) * (load.down_s + load.between_s + 4))
    run_ats = [now + timedelta(seconds=15 + rng.randint(0, span)) for _ in range(load.oneoffs)]
    oneoff_bodies = [
        schedule_body(type="oneoff", run_at=t.isoformat(), payload=payload, **policy) | {"interval_seconds": None}
        for t in run_ats
    ]
    created = await create_schedules(settings, stack, oneoff_bodies, tenants)
    oneoffs = dict(zip(created, run_ats, strict=True))
    tenant_of |= {sid: tenants[i % len(tenants)] for i, sid in enumerate(created)}
    return _Plan(intervals, oneoffs, tenant_of)


@dataclass
class Changes:
    """Schedule changes a fault made itself: schedules it created (id → (anchor, interval)) and schedules it
    deleted or paused (id → when the API acknowledged it). The latter are checked only for deletes winning."""

    added: dict[str, tuple[datetime, int]]
    tenant_of: dict[str, str]
    stopped: dict[str, datetime]


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


async def _stop_some(settings: Settings, stack: Stack, plan: _Plan, share: float) -> dict[str, datetime]:
    """Delete a share of the interval schedules and pause as many others; returns when each was acknowledged."""
    step = max(1, round(1 / share))
    ids = list(plan.intervals)
    stopped: dict[str, datetime] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        for i in range(0, len(ids), step):
            doomed, paused = ids[i], ids[i + step // 2] if i + step // 2 < len(ids) else None
            response = await api.delete(f"/api/schedules/{doomed}", headers=auth(settings, plan.tenant_of[doomed]))
            response.raise_for_status()
            stopped[doomed] = datetime.now(UTC)
            if paused is not None:
                url = f"/api/schedules/{paused}/pause"
                response = await api.post(url, headers=auth(settings, plan.tenant_of[paused]))
                response.raise_for_status()
                stopped[paused] = datetime.now(UTC)
    return stopped


async def kill_each_service(env: Env, sink: Sink, load: Load) -> Verdict:
    """SIGKILL every service in turn under load, restart it, then delete some schedules: nothing may be lost."""
    return await _under_load("kill each service", env, sink, load, _kill_each)


async def kill_broker_and_database(env: Env, sink: Sink, load: Load) -> Verdict:
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


async def _partitions(stack: Stack, name: str) -> list[int]:
    """The partitions a planner says it fires for (empty while it is not ready or not answering)."""
    held = (await stack.health(name)).get("partitions")
    return [int(p) for p in held] if isinstance(held, list) else []


async def _until_split(stack: Stack, planners: list[str], within_s: float = 120) -> float:
    """Wait until ``planners`` together hold every partition, each at least one and none twice; seconds taken."""
    started = time.monotonic()
    total = stack.settings.partitions
    while time.monotonic() - started < within_s:
        held = [await _partitions(stack, name) for name in planners]
        flat = [p for ps in held for p in ps]
        if all(held) and len(flat) == total and len(set(flat)) == total:
            say("partitions: " + ", ".join(f"{n} {len(ps)}" for n, ps in zip(planners, held, strict=True)))
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise RuntimeError(f"partitions not split over {planners} within {within_s:.0f} s")


async def replicas_and_rebalance(env: Env, sink: Sink, load: Load) -> Verdict:
    """Two planners and two executors; one of each is SIGKILLed for good and its partitions move to the other;
    then a third planner joins. No fire is published twice across the rebalances that no crash caused."""
    facts: dict[str, float] = {}
    calm: list[tuple[datetime, datetime]] = []

    async def faults(stack: Stack, load: Load) -> None:
        planner2, executor2 = stack.add_replica("planner", 2), stack.add_replica("executor", 2)
        joined = datetime.now(UTC)
        stack.start(planner2)
        stack.start(executor2)
        facts["second planner joined: partitions split after (s)"] = await _until_split(stack, ["planner", planner2])
        await stack.wait_healthy(executor2, timeout=120)
        calm.append((joined, datetime.now(UTC)))
        await asyncio.sleep(load.between_s)
        say("kill -9 planner and executor (not restarted)")
        stack.kill("planner")
        stack.kill("executor")
        facts["planner killed: partitions moved after (s)"] = await _until_split(stack, [planner2])
        await asyncio.sleep(load.between_s)
        planner3 = stack.add_replica("planner", 3)
        joined = datetime.now(UTC)
        stack.start(planner3)
        facts["third planner joined: partitions split after (s)"] = await _until_split(stack, [planner2, planner3])
        calm.append((joined, datetime.now(UTC)))
        await asyncio.sleep(load.between_s)
        facts["fires published twice across rebalances no crash caused"] = await _fired_twice(stack.settings, calm)

    verdict = await _under_load("replicas: kill one of two, add a third", env, sink, load, faults)
    twice = int(facts.get("fires published twice across rebalances no crash caused", 0))
    problems = (f"{twice} fires published twice across a rebalance no crash caused",) if twice else ()
    return replace(verdict, problems=verdict.problems + problems, facts=tuple(facts.items()))


async def _fired_twice(settings: Settings, windows: list[tuple[datetime, datetime]]) -> int:
    """(schedule, nominal time) pairs published more than once, where a later copy went out inside a window."""
    first_seen: dict[tuple[str, datetime], int] = {}
    twice = 0
    bounds = [(a.timestamp() * 1000, b.timestamp() * 1000 + 5000) for a, b in windows]
    for sid, nominal, _, ts in sorted(await read_runs_due(settings), key=lambda r: r[3]):
        if (sid, nominal) not in first_seen:
            first_seen[(sid, nominal)] = ts
        elif any(lo <= ts <= hi for lo, hi in bounds):
            twice += 1
    return twice


async def kafka_down_while_changing(env: Env, sink: Sink, load: Load) -> Verdict:
    """The broker is down while the API takes creates, pauses and deletes (some deletes of schedules created during
    the outage): once it is back every change reaches the planner, in order, and deletes and pauses win."""

    async def faults(stack: Stack, load: Load) -> Changes:
        settings = stack.settings
        kafka = LocalKafka()
        pid = int((kafka.state_dir / "kafka.pid").read_text().strip())
        say("kill -9 kafka; changing schedules while it is down")
        os.kill(pid, signal.SIGKILL)
        tenants = [f"chaos-{i}" for i in range(load.tenants)]
        count = max(10, load.intervals // 20)
        cadences = [load.min_interval_s + i % (load.max_interval_s - load.min_interval_s + 1) for i in range(count)]
        payload = {"url": f"{sink.url}/hook"}
        bodies = [
            schedule_body(interval_seconds=c, payload=payload, misfire_policy="fire_all", misfire_grace_seconds=600)
            for c in cadences
        ]
        created = await create_schedules(settings, stack, bodies, tenants)
        tenant_of = {sid: tenants[i % len(tenants)] for i, sid in enumerate(created)}
        ids = list(created)
        stopped: dict[str, datetime] = {}
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            # Every fourth new schedule is deleted and every fourth other one paused, while the broker is still down.
            for n, sid in enumerate(ids):
                headers = auth(settings, tenant_of[sid])
                if n % 4 == 1:
                    (await api.delete(f"/api/schedules/{sid}", headers=headers)).raise_for_status()
                elif n % 4 == 3:
                    (await api.post(f"/api/schedules/{sid}/pause", headers=headers)).raise_for_status()
                else:
                    continue
                stopped[sid] = datetime.now(UTC)
        say(f"created {len(ids)} schedules, deleted or paused {len(stopped)} of them, with the broker down")
        await asyncio.sleep(load.down_s)
        await asyncio.to_thread(kafka.start)
        say("kafka is back")
        await _all_healthy(stack)
        await asyncio.sleep(load.between_s)
        added = {sid: (anchor, cadences[i]) for i, (sid, anchor) in enumerate(created.items())}
        return Changes(added=added, tenant_of=tenant_of, stopped=stopped)

    return await _under_load("kafka down while schedules change", env, sink, load, faults)


# Who reads which topic: a poison record on it must be quarantined by each of them.
POISON_READERS: dict[TopicSpec, tuple[str, ...]] = {
    SCHEDULES: ("planner",),
    SIGNING_KEYS: ("executor",),
    FLOW_LIMITS: ("executor",),
    PLANNER_COMMANDS: ("planner",),
    RUNS_DUE: ("executor", "recorder"),
    RUNS_FLOW: ("executor",),
    RUNS_RESULTS: ("recorder", "dlq"),
    RUNS_DLQ: ("dlq",),
    DLQ_COMMANDS: ("dlq",),
    RETRY_TOPICS[0]: ("executor",),
}


async def poison_every_topic(env: Env, sink: Sink, load: Load) -> Verdict:
    """An undecodable record on every topic a service reads: each reader quarantines it and goes on."""
    found: set[tuple[str, str]] = set()
    expected_pairs: set[tuple[str, str]] = set()

    async def faults(stack: Stack, load: Load) -> None:
        settings = stack.settings
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
        await producer.start()
        try:
            for spec, readers in POISON_READERS.items():
                topic = topic_name(settings, spec)
                await producer.send_and_wait(topic, b"\x00poison, not an event", key=b"chaos-poison")
                expected_pairs.update((topic, reader) for reader in readers)
                say(f"poisoned {topic}")
        finally:
            await producer.stop()
        await asyncio.sleep(load.between_s)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not expected_pairs <= found:
            for record in await read_records(
                settings, topic_name(settings, QUARANTINE), keys=["chaos-poison"], count=len(expected_pairs), timeout=5
            ):
                headers = dict(record.headers)
                found.add((headers["chime-quarantine-topic"].decode(), headers["chime-quarantine-service"].decode()))
        say(f"quarantined by {len(expected_pairs & found)} of {len(expected_pairs)} (topic, reader) pairs")
        await _all_healthy(stack)

    verdict = await _under_load("poison on every topic", env, sink, load, faults)
    problems = [f"{service} did not quarantine the poison on {topic}" for topic, service in expected_pairs - found]
    return replace(verdict, problems=verdict.problems + tuple(sorted(problems)))


async def failing_receiver(env: Env, load: Load) -> Verdict:
    """A receiver that fails 30% of calls, times out on 5% and resets 5%: every fire succeeds or is dead-lettered."""
    sink = FaultySink(Faults())
    await sink.start()
    # Quick retries (4 attempts, 1 s apart, a 1 s timeout) so every run settles within seconds of its fire.
    extra = {
        "payload": {"timeout_seconds": 1},
        "retry_policy": {"max_attempts": 4, "backoff": "fixed", "initial_delay_seconds": 1, "jitter": False},
    }
    halved = replace(load, intervals=load.intervals // 2, oneoffs=load.oneoffs // 2)

    async def faults(stack: Stack, load: Load) -> None:
        await asyncio.sleep(len(KILL_ORDER) * (load.down_s + load.between_s))

    try:
        verdict = await _under_load("failing receiver", env, sink, halved, faults, extra=extra, dead_letters=True)
    finally:
        await sink.stop()
    say(f"failing receiver: answers {dict(sink.answered)}")
    problems = () if verdict.dead_lettered or not verdict.expected else ("no run was dead-lettered: faults too mild",)
    return replace(verdict, problems=verdict.problems + problems)


async def _dead_letters(settings: Settings, ids: set[str]) -> frozenset[tuple[str, datetime]]:
    """(schedule, nominal time) of every run of ``ids`` in ``chime.runs.dlq`` so far."""
    found: set[tuple[str, datetime]] = set()
    for record in await read_all(settings, topic_name(settings, RUNS_DLQ)):
        event = decode_event(record.value or b"")
        if isinstance(event, DlqEntry) and str(event.data.run.schedule_id) in ids:
            found.add((str(event.data.run.schedule_id), event.data.run.nominal_time))
    return frozenset(found)


# Schedules whose run history is compared with what the sink received, after each scenario.
_HISTORY_SAMPLE = 40


async def _history_disagreements(
    settings: Settings,
    stack: Stack,
    plan: _Plan,
    sample: list[str],
    arrivals: list[Arrival],
    start: datetime,
    end: datetime,
) -> tuple[str, ...]:
    """Run history (the API) and the sink must agree: a run in the window is ``succeeded`` exactly when one of its
    calls reached the sink. The recorder lags a little, so it is given half a minute to agree."""
    delivered = {(a.schedule_id, a.nominal) for a in arrivals if start <= a.nominal < end}
    window = {
        "from": start.isoformat(),
        "to": (end - timedelta(milliseconds=1)).isoformat(),
        "limit": "500",
        "trigger": "schedule",
    }
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        while True:
            problems: list[str] = []
            for sid in sample:
                response = await api.get(
                    f"/api/schedules/{sid}/runs",
                    params=window,
                    headers=auth(settings, plan.tenant_of[sid]),
                )
                response.raise_for_status()
                runs = response.json()["items"]
                status = {datetime.fromisoformat(run["scheduled_for"]): run["status"] for run in runs}
                succeeded = {nominal for nominal, state in status.items() if state == "succeeded"}
                reached = {nominal for s, nominal in delivered if s == sid}
                if succeeded != reached:
                    odd = sorted(reached ^ succeeded)[:3]
                    shown = ", ".join(f"{n.isoformat()} ({status.get(n, 'no run')})" for n in odd)
                    problems.append(
                        f"run history of {sid} disagrees with the sink: {len(reached - succeeded)} delivered but not "
                        f"succeeded, {len(succeeded - reached)} succeeded but not delivered; e.g. {shown}"
                    )
            if not problems or time.monotonic() > deadline:
                return tuple(problems)
            await asyncio.sleep(2)


async def _all_healthy(stack: Stack) -> None:
    for name in KILL_ORDER:
        await stack.wait_healthy(name, timeout=180)


async def _under_load(
    scenario: str,
    env: Env,
    sink: Sink,
    load: Load,
    faults: Callable[[Stack, Load], Awaitable[Changes | None]],
    *,
    extra: dict[str, Any] | None = None,
    dead_letters: bool = False,
) -> Verdict:
    async with chime_stack(env) as (settings, stack):
        say(f"{scenario}: creating {load.intervals} interval schedules and {load.oneoffs} one-offs")
        plan = await _create(settings, stack, sink, load, extra)
        await asyncio.sleep(2 * load.max_interval_s + 2)
        start = datetime.now(UTC)
        changes = await faults(stack, load)
        end = datetime.now(UTC)
        stopped: dict[str, datetime] = {}
        if changes is not None:
            plan.intervals |= changes.added
            plan.tenant_of |= changes.tenant_of
            stopped = changes.stopped
            for sid in stopped:
                plan.intervals.pop(sid, None)
        expected = plan.expected(start, end)
        ids = set(plan.intervals) | set(plan.oneoffs) | set(stopped)

        def window() -> list[Any]:
            return [a for a in sink.arrivals if a.schedule_id in ids and start <= a.nominal < end]

        # The fault window's fires are waited for before the deletes: a delete or pause acknowledged while a planner
        # still catches up wins over the fires it had not made yet, which would not count as delivered.
        wanted = {(sid, nominal) for sid, nominals in expected.items() for nominal in nominals}
        dead: frozenset[tuple[str, datetime]] = frozenset()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if dead_letters:
                dead = await _dead_letters(settings, ids)
            if wanted <= {(a.schedule_id, a.nominal) for a in window()} | dead:
                break
            await asyncio.sleep(2)
        say(f"{scenario}: deleting a tenth of the interval schedules and pausing another tenth")
        deleted = await _stop_some(settings, stack, plan, 0.1) | stopped
        # Deliveries for deleted and paused schedules keep being watched for a few seconds after the last of them.
        await asyncio.sleep(max(0.0, 5 - (datetime.now(UTC) - max(deleted.values())).total_seconds()))
        arrivals = [a for a in sink.arrivals if a.schedule_id in ids and a.nominal >= start]
        verdict = judge(scenario, arrivals, expected, deleted, dead)
        kept = sorted(set(plan.intervals) - set(deleted))[:_HISTORY_SAMPLE]
        disagree = await _history_disagreements(settings, stack, plan, kept, arrivals, start, end)
        if disagree:
            verdict = replace(verdict, problems=(*verdict.problems, *disagree))
        sink.arrivals[:] = [a for a in sink.arrivals if a.schedule_id not in ids]
        say(f"{scenario}: {verdict.delivered:,} of {verdict.expected:,} delivered, {verdict.lost} lost")
        return verdict
