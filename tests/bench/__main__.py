"""`make bench`: webhook lag of the whole stack against a plain in-process timer baseline, same machine, same run.

Lag = sink arrival minus nominal time. The baseline is an asyncio loop that calls the same sink with httpx at
each nominal time (no Kafka, no state): the floor this machine allows. Bounded: about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import httpx

from services.api.migrate import migrate
from shared.settings import Settings, load_settings
from shared.topics import create_topics
from tests.e2e.stack import RecordingSink, Stack, grid
from tests.integration.helpers import auth, create_database, schedule_body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(name: str, lags_ms: list[float], seconds: float) -> str:
    if not lags_ms:
        return f"{name:<10} deliveries=     0"
    return (
        f"{name:<10} deliveries={len(lags_ms):>6}  rate={len(lags_ms) / seconds:7.1f}/s  "
        f"p50={statistics.median(lags_ms):7.2f} ms  p99={percentile(lags_ms, 0.99):7.2f} ms  "
        f"max={max(lags_ms):8.2f} ms"
    )


async def baseline(sink: RecordingSink, schedules: int, interval: int, seconds: float) -> list[float]:
    """An in-process timer per schedule calling the sink at each nominal time."""
    marker = f"baseline-{uuid.uuid4()}"
    start = datetime.now(UTC) + timedelta(seconds=1)
    deadline = start + timedelta(seconds=seconds)
    # aiohttp with a bounded number of calls in flight (like the executor's concurrency): httpx's pool slows
    # down badly with thousands of waiting requests, which would make the floor look worse than it is.
    slots = asyncio.Semaphore(200)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as client:

        async def one(i: int) -> None:
            nominal = start + timedelta(milliseconds=i * interval * 1000 / schedules)
            while nominal < deadline:
                await asyncio.sleep(max(0.0, (nominal - datetime.now(UTC)).total_seconds()))
                stamp = nominal.isoformat(timespec="milliseconds").replace("+00:00", "Z")
                headers = {"Chime-Schedule-Id": marker, "Chime-Scheduled-For": stamp}
                async with slots, client.post(f"{sink.url}/hook", headers=headers) as response:
                    await response.read()
                nominal += timedelta(seconds=interval)

        await asyncio.gather(*(one(i) for i in range(schedules)))
    return [(a.received - a.nominal).total_seconds() * 1000 for a in sink.for_schedule(marker)]


_STAGE_METRICS = {
    "planner": ("chime_planner_publish_late_seconds", "chime_planner_publish_ack_seconds"),
    "executor": (
        "chime_executor_received_late_seconds",
        "chime_executor_call_lag_seconds",
        "chime_executor_call_duration_seconds",
    ),
}

StageSample = dict[str, tuple[float, float]]


async def _stage_metrics(stack: Stack) -> StageSample:
    """Sum and count of each stage histogram series, from the services' own /metrics."""
    out: StageSample = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for service, metrics in _STAGE_METRICS.items():
            text = (await client.get(f"http://127.0.0.1:{stack.ops_ports[service]}/metrics")).text
            for line in text.splitlines():
                name, _, value = line.rpartition(" ")
                for metric in metrics:
                    for index, suffix in enumerate(("_sum", "_count")):
                        rest = name[len(metric + suffix) :]
                        if name.startswith(metric + suffix) and rest[:1] in ("", "{"):
                            pair = list(out.get(metric + rest, (0.0, 0.0)))
                            pair[index] = float(value)
                            out[metric + rest] = (pair[0], pair[1])
    return out


def _cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """User and system CPU time of each process so far (Linux /proc)."""
    out: dict[str, tuple[float, float]] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) / tick, int(fields[12]) / tick)
    return out


def _broker_pid() -> dict[str, int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    return {"kafka": int(entry.name)}
            except OSError:
                continue
    return {}


def _print_stage_means(before: StageSample, after: StageSample) -> None:
    """Means over the measurement window only: where the time went."""
    for series, (total, count) in sorted(after.items()):
        total -= before.get(series, (0.0, 0.0))[0]
        count -= before.get(series, (0.0, 0.0))[1]
        if count:
            print(f"  {series}: mean {total / count * 1000:.1f} ms over {count:.0f}")


async def chime(
    settings: Settings, sink: RecordingSink, schedules: int, interval: int, seconds: float
) -> tuple[list[float], int]:
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(settings, Path(tmp))
        await stack.start_all()
        try:
            tenant = f"bench-{uuid.uuid4().hex[:6]}"
            headers = auth(settings, tenant)
            async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
                sem = asyncio.Semaphore(20)

                async def create(i: int) -> tuple[str, datetime]:
                    async with sem:
                        body = schedule_body(interval_seconds=interval, payload={"url": f"{sink.url}/hook"})
                        response = await api.post("/api/schedules", json=body, headers=headers)
                        response.raise_for_status()
                        created = response.json()
                        return created["id"], datetime.fromisoformat(created["created_at"])

                anchors = dict(await asyncio.gather(*(create(i) for i in range(schedules))))
                ids = set(anchors)
            # Measure only after every schedule has fired once (warm-up), for the measurement window.
            await asyncio.sleep(interval + 2)
            window_start = datetime.now(UTC)
            stages_before = await _stage_metrics(stack)
            pids = {name: proc.pid for name, proc in stack.procs.items()} | _broker_pid()
            cpu_before = _cpu_seconds(pids)
            await asyncio.sleep(seconds)
            window_end = datetime.now(UTC)
            stages_after = await _stage_metrics(stack)
            cpu_after = _cpu_seconds(pids)
            expected = sum(
                len(grid(window_start, window_end - timedelta(milliseconds=1), interval, a)) for a in anchors.values()
            )
            # Late deliveries still count (their lag shows it); wait for them a while.
            deadline = time.monotonic() + max(10.0, 2.0 * interval)
            while time.monotonic() < deadline:
                got = sum(1 for a in sink.arrivals if a.schedule_id in ids and window_start <= a.nominal < window_end)
                if got >= expected:
                    break
                await asyncio.sleep(0.5)
            arrivals = [a for a in sink.arrivals if a.schedule_id in ids and window_start <= a.nominal < window_end]
            seen: set[tuple[str, datetime]] = set()
            repeats = 0
            for a in arrivals:
                key = (a.schedule_id, a.nominal)
                repeats += key in seen
                seen.add(key)
            print(f"chime: {len(seen)} of {expected} expected fires delivered in the window")
            _print_stage_means(stages_before, stages_after)
            busy = ", ".join(
                f"{name} {(sum(cpu_after[name]) - sum(cpu_before[name])) / seconds * 100:.0f}%"
                f" (sys {(cpu_after[name][1] - cpu_before[name][1]) / seconds * 100:.0f}%)"
                for name in sorted(cpu_after)
                if name in cpu_before
            )
            print(f"  CPU over the window (100% = one core): {busy}")
            return [(a.received - a.nominal).total_seconds() * 1000 for a in arrivals], repeats
        finally:
            stack.stop_all()


async def main(schedules: int, interval: int, seconds: float) -> None:
    from services.devstack.stack import up

    stack_env = up()
    try:
        settings = load_settings(
            _env_file=None,
            kafka_bootstrap=stack_env.env["CHIME_KAFKA_BOOTSTRAP"],
            database_url=await create_database(stack_env.env["CHIME_DATABASE_URL"]),
            topic_prefix=f"b{uuid.uuid4().hex[:8]}.chime.",
            allow_private_targets=True,
        )
        await migrate(settings)
        await create_topics(settings)
        sink = RecordingSink()
        await sink.start()
        try:
            t0 = time.monotonic()
            base = await baseline(sink, schedules, interval, seconds)
            base_s = time.monotonic() - t0
            lags, repeats = await chime(settings, sink, schedules, interval, seconds)
        finally:
            await sink.stop()
        print(f"\n{schedules} interval schedules every {interval} s, {seconds:.0f} s window, lag = arrival - nominal")
        print(summarize("baseline", base, base_s))
        print(summarize("chime", lags, seconds))
        if not lags or not base:
            return
        print(
            f"ratio p50 {statistics.median(lags) / statistics.median(base):.2f}x, "
            f"p99 {percentile(lags, 0.99) / percentile(base, 0.99):.2f}x; repeated deliveries: {repeats}"
        )
    finally:
        stack_env.down()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    asyncio.run(main(args.schedules, args.interval, args.seconds))
