"""Figures from raw samples: percentiles, and CPU time per process from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stat_fields(pid: str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces): the file's third field
    comes first."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def lag_summary(lags_ms: list[float]) -> dict[str, float]:
    if not lags_ms:
        return {"count": 0}
    return {
        "count": len(lags_ms),
        "p50_ms": round(statistics.median(lags_ms), 2),
        "p99_ms": round(percentile(lags_ms, 0.99), 2),
        "max_ms": round(max(lags_ms), 2),
    }


def lag_timeline(samples: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Lag per second of nominal time, from (nominal epoch seconds, lag ms) pairs: where the tail comes from."""
    by_second: dict[int, list[float]] = {}
    for nominal, lag_ms in samples:
        by_second.setdefault(int(nominal), []).append(lag_ms)
    start = min(by_second, default=0)
    return [{"second": second - start, **lag_summary(lags)} for second, lags in sorted(by_second.items())]


def cpu_seconds(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """User and system CPU seconds of each process so far, its live child processes included (the API's workers)
    unless they are measured under a name of their own (the services the bench process started), from Linux /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    usage: dict[int, tuple[int, float, float]] = {}  # pid -> (parent, user, system)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = stat_fields(entry.name)
        except OSError:
            continue
        usage[int(entry.name)] = (int(fields[1]), int(fields[11]) / tick, int(fields[12]) / tick)
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in usage.items():
        children.setdefault(parent, []).append(pid)
    measured = set(pids.values())
    out: dict[str, tuple[float, float]] = {}
    for name, root in pids.items():
        if root not in usage:
            continue
        user = system = 0.0
        tree = [root]
        while tree:
            pid = tree.pop()
            user += usage[pid][1]
            system += usage[pid][2]
            tree.extend(child for child in children.get(pid, ()) if child not in measured)
        out[name] = (user, system)
    return out


def broker_pid() -> dict[str, int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"kafka.Kafka" in (entry / "cmdline").read_bytes():
                    return {"kafka": int(entry.name)}
            except OSError:
                continue
    return {}


# A broker started for the run compiles its hot paths (the JVM's JIT) for about its first minute under load: at
# 1,000 fires/s its CPU read 12-17% of a core in the window's first 15 s and 7% from 25 s on (steady, 90 s window,
# sampled every 5 s), a tenth of the CPU per fire. A window opens once the broker is this old.
BROKER_WARM_S = 75.0


def process_age_s(pid: int) -> float:
    """Seconds since process ``pid`` started."""
    fields = stat_fields(str(pid))  # the 22nd field of the file, the start time, is the 20th of these
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


def broker_warmup_left_s() -> float:
    """How much longer a broker started for this run needs before its CPU is its steady cost (0: none found)."""
    pid = broker_pid().get("kafka")
    return max(0.0, BROKER_WARM_S - process_age_s(pid)) if pid is not None else 0.0


def postgres_cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of Postgres: every server process alive now, and those that have exited.

    A backend that exits (a pool that closed a connection) takes its CPU with it; the server, which reaps it,
    keeps it in its children's times, so those are added too.
    """
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = stat_fields(entry.name)
        except OSError:
            continue
        # utime, stime, then the reaped children's cutime, cstime (non-zero only for the server itself)
        user += (int(fields[11]) + int(fields[13])) / tick
        system += (int(fields[12]) + int(fields[14])) / tick
    return user, system


def cpu_share(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]], seconds: float
) -> dict[str, float]:
    """Each process's CPU over the window, in percent of one core."""
    return {
        name: round((sum(after[name]) - sum(before[name])) / seconds * 100, 1)
        for name in sorted(after)
        if name in before
    }


class LoopStalls:
    """How late the load generator's own event loop woke up, per second of a window.

    A latency is timed by the generator's loop, so a pause of that loop (a collection, a burst of its own work)
    reads as a slow answer. Reported beside the latencies, it tells the two apart.
    """

    def __init__(self, tick_s: float = 0.002) -> None:
        self._tick_s = tick_s
        self._worst: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._start = 0.0

    async def __aenter__(self) -> LoopStalls:
        self._start = time.perf_counter()
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self._tick_s)
            late_ms = (time.perf_counter() - before - self._tick_s) * 1000
            second = int(before - self._start)
            self._worst[second] = max(self._worst.get(second, 0.0), late_ms)

    def by_second(self) -> list[float]:
        """The worst wake-up delay (ms) in each second since the start."""
        return [round(self._worst.get(s, 0.0), 1) for s in range(max(self._worst, default=-1) + 1)]
