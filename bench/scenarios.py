"""Each scenario once against Chime (the whole stack as real processes) and once against the peer.

Chime gets a fresh stack per scenario (its own topics and database), so one scenario's schedules never load the
next. The sink is this process's; the peer runs in a process of its own.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.sink import Arrival, BenchSink
from bench.stats import (
    LoopStalls,
    broker_pid,
    broker_warmup_left_s,
    cpu_seconds,
    cpu_share,
    lag_summary,
    lag_timeline,
    postgres_cpu_seconds,
)
from services.api.migrate import migrate
from shared.httpclient import HttpClient, HttpError
from shared.resolver import GuardedResolver
from shared.settings import Settings, load_settings
from shared.topics import RUNS_DUE, create_topics, delete_topics, topic_name
from tests.e2e.stack import Stack, grid
from tests.integration.helpers import auth, create_database, drop_database, schedule_body

CHIME_PROCESSES = ("api", "recorder", "planner", "executor", "dlq", "kafka")
# A tenant's planned fires are capped (CHIME_MAX_FIRES_PER_SECOND_PER_TENANT, 1,000/s by default) and so are its
# requests (CHIME_RATE_LIMIT_PER_SECOND, 100/s): load is spread over tenants as a real installation's would be.
_FIRES_PER_TENANT = 500.0
_CREATE_CONCURRENCY = 32


@dataclass
class Env:
    kafka: str
    database: str
    # Executor processes in each stack: on a machine with cores to spare, a burst's calls spread over them.
    executors: int = 1
    # `chime api` processes (CHIME_API_WORKERS) in each stack.
    api_workers: int = 1

    async def settings(self) -> Settings:
        settings = load_settings(
            _env_file=None,
            kafka_bootstrap=self.kafka,
            database_url=await create_database(self.database),
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.chime.",
            allow_private_targets=True,
            api_workers=self.api_workers,
        )
        await migrate(settings)
        await create_topics(settings)
        return settings


@asynccontextmanager
async def chime_stack(env: Env) -> AsyncIterator[tuple[Settings, Stack]]:
    settings = await env.settings()
    # CHIME_STACK_LOGS keeps the services' logs (one directory per stack under it), the topics and the database,
    # for a look afterwards.
    keep = os.environ.get("CHIME_STACK_LOGS")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = tempfile.mkdtemp(dir=keep) if keep else scratch
        stack = Stack(settings, Path(tmp))
        await stack.start_all()
        for number in range(2, env.executors + 1):
            replica = stack.add_replica("executor", number)
            stack.start(replica)
            await stack.wait_healthy(replica)
        try:
            yield settings, stack
        finally:
            stack.stop_all()
            if keep:
                (Path(tmp) / "settings.env").write_text(
                    f"CHIME_TOPIC_PREFIX={settings.topic_prefix}\nCHIME_DATABASE_URL={settings.database_url}\n"
                )
            else:
                # A benchmark's installation is thrown away; its partitions would tax every later run on the broker.
                await delete_topics(settings)
                await drop_database(settings.database_url)


def _tenants(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"bench-{run}-{i}" for i in range(count)]


async def create_schedules(
    settings: Settings, stack: Stack, bodies: list[dict[str, Any]], tenants: list[str]
) -> dict[str, datetime]:
    """Create schedules through the API; returns id → anchor (start_at, or creation time).

    Set-up, not a measurement: the executor's lean HTTP client keeps the generator from being what limits it.
    """
    headers = {t: {**auth(settings, t), "Content-Type": "application/json"} for t in tenants}
    slots = asyncio.Semaphore(_CREATE_CONCURRENCY)
    client = HttpClient(GuardedResolver(allow_private=True), excerpt_limit=64 * 1024, user_agent="chime-bench")
    url = f"{stack.api_url}/api/schedules"

    async def create(i: int, body: dict[str, Any]) -> tuple[str, datetime]:
        async with slots:
            payload = json.dumps(body).encode()
            for _ in range(20):
                response = await client.request("POST", url, headers[tenants[i % len(tenants)]], payload, 60.0)
                if response.status != 429:
                    break
                await asyncio.sleep(0.2)
            if response.status != 201:
                raise RuntimeError(f"create answered {response.status}: {response.excerpt[:500]!r}")
            created = json.loads(response.excerpt)
            anchor = created.get("start_at") or created["created_at"]
            return created["id"], datetime.fromisoformat(anchor)

    try:
        return dict(await asyncio.gather(*(create(i, b) for i, b in enumerate(bodies))))
    finally:
        await client.close()


# Calls due in a window's last moments are still arriving as it closes. The bench's own work after a window (counting
# arrivals, tens of thousands of them) holds up the sink's event loop, which would time those calls late: the sink is
# left alone this long first. (The peer's process ends a second after its window, so its last calls had that already.)
_WINDOW_TAIL_S = 1.0


@dataclass
class Window:
    start: datetime
    end: datetime
    cpu: dict[str, float]
    # How late the sink's event loop woke up, worst per second of the window: a call is timed on that loop, so a
    # second with a high lag and a high stall was slow in the instrument, not in the scheduler.
    sink_stall_ms_by_second: list[float]


async def measure_window(seconds: float, pids: dict[str, int]) -> Window:
    start = datetime.now(UTC)
    before = cpu_seconds(pids)
    async with LoopStalls() as stalls:
        await asyncio.sleep(seconds)
        after = cpu_seconds(pids)
        end = datetime.now(UTC)
        await asyncio.sleep(_WINDOW_TAIL_S)
    return Window(start, end, cpu_share(before, after, seconds), stalls.by_second()[: math.ceil(seconds)])


async def wait_for_arrivals(sink: BenchSink, count: Callable[[], int], expected: int, timeout: float) -> None:
    """Late deliveries still count (their lag shows it): wait for them a while."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and count() < expected:
        await asyncio.sleep(0.5)


def deliveries(arrivals: list[Arrival], expected: int) -> dict[str, Any]:
    seen: set[tuple[str, datetime]] = set()
    repeats = 0
    for a in arrivals:
        key = (a.schedule_id, a.nominal)
        repeats += key in seen
        seen.add(key)
    lags = [(a.received - a.nominal).total_seconds() * 1000 for a in arrivals]
    return {
        "expected": expected,
        "delivered": len(seen),
        "missed": max(0, expected - len(seen)),
        "repeats": repeats,
        "lag": lag_summary(lags),
        "lag_by_second": lag_timeline([(a.nominal.timestamp(), lag) for a, lag in zip(arrivals, lags, strict=True)]),
    }


def cpu_per_fire(cpu: dict[str, float], rate: float) -> float | None:
    """Milliseconds of CPU per delivered fire across every Chime process and the broker."""
    if rate <= 0:
        return None
    busy = sum(share for name, share in cpu.items() if Stack.service_of(name) in CHIME_PROCESSES) / 100
    return round(busy / rate * 1000, 3)


def settle_heap() -> None:
    """Before a warm-up: what the set-up left alive is never scanned again, so no long collection pauses the sink
    during the window. The collection itself pauses the sink, so it must not run inside a window."""
    gc.collect()
    gc.freeze()


def say(message: str) -> None:
    """Progress on stderr, so a long run is never silent; the report itself goes to stdout."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: T201


# -- steady rate and burst ---------------------------------------------------------------------------------


async def chime_interval(
    env: Env, sink: BenchSink, schedules: int, interval: int, window_s: float, *, burst: bool
) -> dict[str, Any]:
    """``schedules`` interval schedules every ``interval`` s: spread evenly (steady) or all on one anchor (burst)."""
    async with chime_stack(env) as (settings, stack):
        rate = schedules / interval
        # At least 10 tenants, as an installation's load would be: creates for one tenant are serialized.
        tenants = _tenants(max(10, math.ceil(rate / _FIRES_PER_TENANT)))
        url = f"{sink.url}/hook"
        # Every schedule is anchored explicitly, as the peer's jobs are: all on one instant (burst), or spread
        # evenly over the interval. Anchored at their creation times instead, they followed the creates' pace, which
        # varies and, at 800 creates/s, takes longer than an interval: at "1,000 fires/s" seconds carried 750 to
        # 1,600 fires (2,000/s: 1,400 to 2,700), and the busiest stretch came back every interval.
        anchor = datetime.now(UTC).replace(microsecond=0)
        bodies = [
            schedule_body(
                interval_seconds=interval,
                start_at=(anchor if burst else anchor + timedelta(seconds=i * interval / schedules)).isoformat(),
                payload={"url": url},
            )
            for i in range(schedules)
        ]
        started = time.monotonic()
        kind = "burst" if burst else "steady"
        say(f"chime {kind}: creating {schedules:,} schedules every {interval} s")
        anchors = await create_schedules(settings, stack, bodies, tenants)
        create_rate = schedules / (time.monotonic() - started)
        ids = set(anchors)
        # Measure only once every schedule has fired twice and the set-up's after-effects (the recorder catching
        # up, Postgres analysing the new rows) have passed: two intervals of warm-up, and longer while a broker
        # started for this run is still compiling its hot paths.
        warmup = max(2 * interval + 2, math.ceil(broker_warmup_left_s()))
        say(f"chime {kind}: created at {create_rate:.0f}/s; warming up for {warmup} s")
        # The bench's own collection runs now, not during the window: it pauses the sink.
        settle_heap()
        await asyncio.sleep(warmup)
        pids = {name: proc.pid for name, proc in stack.procs.items()} | broker_pid() | {"bench+sink": os.getpid()}
        say(f"chime {kind}: measuring for {window_s:g} s")
        pg_before = sum(postgres_cpu_seconds())
        window = await measure_window(window_s, pids)
        # Shown beside the others, not in CPU per fire: the target counts Chime's processes and the broker.
        window.cpu["postgres"] = round((sum(postgres_cpu_seconds()) - pg_before) / window_s * 100, 1)
        say(f"chime {kind}: window closed; waiting for late deliveries")
        expected = sum(
            len(grid(window.start, window.end - timedelta(milliseconds=1), interval, a)) for a in anchors.values()
        )

        def in_window() -> list[Arrival]:
            return [a for a in sink.arrivals if a.schedule_id in ids and window.start <= a.nominal < window.end]

        await wait_for_arrivals(sink, lambda: len(in_window()), expected, max(10.0, 2.0 * interval))
        arrivals = in_window()
        out = deliveries(arrivals, expected) | {
            "cpu_percent": window.cpu,
            "api_creates_per_s": round(create_rate, 1),
            "sink_stall_ms_by_second": window.sink_stall_ms_by_second,
        }
        out["rate_per_s"] = round(out["delivered"] / window_s, 1)
        out["cpu_ms_per_fire"] = cpu_per_fire(window.cpu, out["rate_per_s"])
        if burst:
            out["burst"] = burst_figures(arrivals)
        sink.arrivals[:] = [a for a in sink.arrivals if a.schedule_id not in ids]
        return out


def burst_figures(arrivals: list[Arrival]) -> dict[str, Any]:
    """For each instant everything was due at: how long after it the last call arrived."""
    by_instant: dict[datetime, list[Arrival]] = {}
    for a in arrivals:
        by_instant.setdefault(a.nominal, []).append(a)
    spans = sorted((max(x.received for x in group) - instant).total_seconds() for instant, group in by_instant.items())
    return {
        "instants": len(spans),
        "last_delivery_s": round(spans[len(spans) // 2], 3) if spans else None,
        "worst_last_delivery_s": round(spans[-1], 3) if spans else None,
    }


async def peer_interval(
    sink: BenchSink, schedules: int, interval: int, window_s: float, *, burst: bool
) -> dict[str, Any]:
    anchor = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    warmup = 2 * interval + 2
    command = [
        sys.executable,
        "-m",
        "bench.peer",
        "--url",
        f"{sink.url}/hook",
        "--schedules",
        str(schedules),
        "--interval",
        str(interval),
        "--anchor",
        anchor.isoformat(),
        "--seconds",
        str(warmup + window_s + 1),
        *([] if burst else ["--spread"]),
    ]
    proc = subprocess.Popen(command)
    try:
        say(f"apscheduler: {schedules:,} jobs every {interval} s; warming up")
        settle_heap()
        await asyncio.sleep(max(0.0, (anchor - datetime.now(UTC)).total_seconds()) + warmup)
        say(f"apscheduler: measuring for {window_s:g} s")
        window = await measure_window(window_s, {"apscheduler": proc.pid, "bench+sink": os.getpid()})
    finally:
        await asyncio.to_thread(proc.wait, 60)
    per_job = timedelta(seconds=interval / schedules)
    expected = sum(
        len(
            grid(
                window.start,
                window.end - timedelta(milliseconds=1),
                interval,
                anchor + (i * per_job if not burst else timedelta(0)),
            )
        )
        for i in range(schedules)
    )
    arrivals = [
        a for a in sink.arrivals if a.schedule_id.startswith("peer-") and window.start <= a.nominal < window.end
    ]
    sink.arrivals[:] = [a for a in sink.arrivals if not a.schedule_id.startswith("peer-")]
    out = deliveries(arrivals, expected) | {
        "cpu_percent": window.cpu,
        "sink_stall_ms_by_second": window.sink_stall_ms_by_second,
    }
    out["rate_per_s"] = round(out["delivered"] / window_s, 1)
    share = window.cpu.get("apscheduler", 0.0) / 100
    out["cpu_ms_per_fire"] = round(share / out["rate_per_s"] * 1000, 3) if out["rate_per_s"] else None
    if burst:
        out["burst"] = burst_figures(arrivals)
    return out


# -- the API ---------------------------------------------------------------------------------------------------


API_WARMUP_S = 30.0


async def chime_api(
    env: Env, rate: float, seconds: float, propagation_samples: int, warmup_s: float = API_WARMUP_S
) -> dict[str, Any]:
    """Creates paced at ``rate`` per second (open loop) after ``warmup_s`` of the same, then how long a change takes
    to reach the planner."""
    async with chime_stack(env) as (settings, stack):
        tenants = _tenants(max(1, math.ceil(rate / 50)))
        headers = {t: auth(settings, t) for t in tenants}
        latencies: list[float] = []
        sent_at: list[float] = []
        failures = 0
        # The load comes from a lean HTTP client (the executor's): at hundreds of requests a second, httpx spends
        # more CPU per request than the API does, and the generator, not Chime, would set the rate.
        client = HttpClient(GuardedResolver(allow_private=True), excerpt_limit=4096, user_agent="chime-bench")
        url = f"{stack.api_url}/api/schedules"

        async def create(i: int) -> None:
            nonlocal failures
            body = schedule_body(interval_seconds=3600, payload={"url": "http://127.0.0.1:9/hook"})
            request_headers = {**headers[tenants[i % len(tenants)]], "Content-Type": "application/json"}
            t0 = time.perf_counter()
            try:
                response = await client.request("POST", url, request_headers, json.dumps(body).encode(), 30.0)
                failures += response.status != 201
            except (TimeoutError, HttpError):
                failures += 1
            latencies.append((time.perf_counter() - t0) * 1000)
            sent_at.append(t0)

        async def paced(first: int, count: int) -> float:
            """``count`` creates at ``rate`` per second, open loop (each sent on time, whether or not the ones before
            have been answered); returns the start time."""
            start = time.perf_counter()
            tasks = []
            for i in range(count):
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
                tasks.append(asyncio.create_task(create(first + i)))
            await asyncio.gather(*tasks)
            return start

        # Warm-up at the measured rate, not measured: each worker's database pool grows to what this rate needs,
        # every statement is prepared on each connection, and a broker started for this run has compiled its hot
        # paths (the JVM's JIT takes up to a core for about a minute), as in any stack that has been up for a while.
        warm = max(1, int(rate * warmup_s))
        await paced(0, warm)
        latencies.clear()
        sent_at.clear()
        failures = 0
        settle_heap()
        await asyncio.sleep(1.0)
        total = int(rate * seconds)
        pids = {name: proc.pid for name, proc in stack.procs.items()} | broker_pid()
        cpu_before, pg_before = cpu_seconds(pids), postgres_cpu_seconds()
        try:
            async with LoopStalls() as stalls:
                start = await paced(warm, total)
        finally:
            await client.close()
        elapsed = time.perf_counter() - start
        achieved = total / elapsed
        cpu = cpu_share(cpu_before, cpu_seconds(pids), elapsed)
        cpu["postgres"] = round((sum(postgres_cpu_seconds()) - sum(pg_before)) / elapsed * 100, 1)
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
            propagation = await _propagation(settings, api, headers[tenants[0]], propagation_samples)
        return {
            "requests": total,
            "failed": failures,
            "achieved_per_s": round(achieved, 1),
            "create_latency": lag_summary(latencies),
            "create_latency_by_second": lag_timeline(
                [(t - start, lat) for t, lat in zip(sent_at, latencies, strict=True)]
            ),
            "generator_stall_ms_by_second": stalls.by_second(),
            # The window's start on the wall clock, to line its seconds up with logs and other recordings.
            "window_started_at": round(time.time() - (time.perf_counter() - start), 3),
            "cpu_percent": cpu,
            "cpu_ms_per_create": {name: round(share * 10 / achieved, 2) for name, share in cpu.items()},
            "propagation": lag_summary(propagation),
        }


async def _propagation(
    settings: Settings, api: httpx.AsyncClient, headers: dict[str, str], samples: int
) -> list[float]:
    """API 2xx of a run-now until the planner acted on it (its run.due record's timestamp).

    A run-now travels the same way as a schedule change (outbox, relay, ``chime.planner.*``, the planner's
    agent), and its ``run.due`` is the planner's visible proof that it holds the change.
    """
    body = schedule_body(interval_seconds=3600, payload={"url": "http://127.0.0.1:9/hook"})
    schedule = (await api.post("/api/schedules", json=body, headers=headers)).json()["id"]
    consumer = AIOKafkaConsumer(
        topic_name(settings, RUNS_DUE), bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        await consumer.seek_to_end()
        answered: dict[str, float] = {}
        for _ in range(samples):
            response = await api.post(f"/api/schedules/{schedule}/run-now", headers=headers)
            answered[response.json()["id"]] = time.time() * 1000
            await asyncio.sleep(0.05)
        seen: dict[str, float] = {}
        deadline = time.monotonic() + 15
        while len(seen) < len(answered) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for record in (r for rs in batch.values() for r in rs):
                for run_id in answered:
                    if run_id.encode() in (record.value or b""):
                        seen[run_id] = record.timestamp - answered[run_id]
        return list(seen.values())
    finally:
        await consumer.stop()


# -- bulk pause ------------------------------------------------------------------------------------------------


async def chime_bulk(env: Env, sink: BenchSink, schedules: int, rounds: int) -> dict[str, Any]:
    """A bulk pause by label of ``schedules`` schedules firing every 5 s: how long after the API's answer calls
    still went out (the latest nominal time called), and when the executors' stops were in Kafka."""
    async with chime_stack(env) as (settings, stack):
        tenant = _tenants(1)[0]
        headers = auth(settings, tenant)
        label = uuid.uuid4().hex[:8]
        bodies = [
            schedule_body(interval_seconds=5, labels={"bulk": label}, payload={"url": f"{sink.url}/hook"})
            for _ in range(schedules)
        ]
        say(f"chime bulk: creating {schedules:,} schedules every 5 s")
        anchors = await create_schedules(settings, stack, bodies, [tenant])
        ids = set(anchors)
        selector = {"labels": {"bulk": label}}
        after_ms: list[float] = []
        stops_ms: list[float] = []
        async with httpx.AsyncClient(base_url=stack.api_url, timeout=60) as api:
            for n in range(rounds):
                await asyncio.sleep(12)  # every schedule fired, and runs are announced for the next two seconds
                body = {"action": "pause", "selector": selector}
                sent = time.time()
                answer = await api.post("/api/schedules/bulk", json=body, headers=headers)
                answered = time.time()
                if answer.status_code != 200 or answer.json()["changed"] != schedules:
                    raise RuntimeError(f"bulk pause failed: {answer.status_code} {answer.text[:200]}")
                await asyncio.sleep(4)
                at = datetime.fromtimestamp(answered, tz=UTC)
                late = [(a.nominal - at).total_seconds() * 1000 for a in sink.arrivals if a.schedule_id in ids]
                after_ms.append(max([0.0, *late]))
                stops_ms.append(await _stops_in_kafka_ms(settings, sent, answered))
                say(f"chime bulk: round {n + 1}: latest call {after_ms[-1]:.0f} ms after the answer")
                sink.arrivals[:] = [a for a in sink.arrivals if a.schedule_id not in ids]
                resumed = await api.post("/api/schedules/bulk", json={**body, "action": "resume"}, headers=headers)
                if resumed.status_code != 200:
                    raise RuntimeError(f"bulk resume failed: {resumed.status_code}")
        return {
            "schedules": schedules,
            "rounds": rounds,
            "latest_call_after_answer_ms": [round(v, 1) for v in after_ms],
            "stops_in_kafka_after_answer_ms": [round(v, 1) for v in stops_ms],
        }


async def _stops_in_kafka_ms(settings: Settings, sent: float, answered: float) -> float:
    """When the last ``schedule.stopped`` of the change was appended to ``chime.runs.due``, after the answer."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        topic = topic_name(settings, RUNS_DUE)
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        starts = await consumer.offsets_for_times({tp: int(sent * 1000) for tp in tps})
        ends = await consumer.end_offsets(tps)
        last = answered
        for tp in tps:
            start = starts.get(tp)
            if start is None:
                continue
            consumer.seek(tp, start.offset)
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000, max_records=5000)
                for record in batch.get(tp, []):
                    if b"schedule.stopped" in (record.value or b""):
                        last = max(last, record.timestamp / 1000)
        return (last - answered) * 1000
    finally:
        await consumer.stop()
