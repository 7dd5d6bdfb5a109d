"""The whole stack as real processes (api, recorder, planner, executor) plus a recording HTTP sink."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from services.devstack.priority import lower_priority
from shared.settings import Settings

SERVICES = ("api", "recorder", "planner", "executor", "dlq")


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port nothing listens on now, and not one handed out before in this process: nothing binds a port
    until its process starts, so two picks in a row can otherwise get the same one."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Arrival:
    received: datetime
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def schedule_id(self) -> str:
        return self.headers.get("chime-schedule-id", "")

    @property
    def nominal(self) -> datetime:
        return datetime.fromisoformat(self.headers["chime-scheduled-for"])

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class RecordingSink:
    """Records every call. A path answers from its script (``script(path, [Reply, ...])``) while it lasts, then
    with the query's ``status`` (default 200) after the query's ``delay`` seconds."""

    port: int = field(default_factory=free_port)
    arrivals: list[Arrival] = field(default_factory=list)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    # Calls being answered now, and the most at once, by the path's first segment.
    active: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.arrivals.append(
            Arrival(
                received=datetime.now(UTC),
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
            )
        )
        self._changed.set()
        script = self.scripts.get(request.path)
        reply = script.pop(0) if script else None
        if reply is None:
            reply = Reply(status=int(request.query.get("status", "200")), delay=float(request.query.get("delay", "0")))
        group = request.path.split("/")[1]
        self.active[group] = now = self.active.get(group, 0) + 1
        self.peak[group] = max(self.peak.get(group, 0), now)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
        finally:
            self.active[group] -= 1
        return web.Response(status=reply.status, headers=reply.headers, text="ok")

    def script(self, path: str, replies: list[Reply]) -> str:
        self.scripts[path] = list(replies)
        return f"{self.url}{path}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def for_schedule(self, schedule_id: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.schedule_id == schedule_id]

    async def wait_until(self, check: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``check`` (a look at the arrivals) holds, looking again on every arrival; False on timeout."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() >= deadline:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)
            except TimeoutError:
                pass
        return True

    async def wait_for(self, schedule_id: str, count: int, timeout: float) -> list[Arrival]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_schedule(schedule_id)
            if len(got) >= count:
                return got
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=0.5)
            except TimeoutError:
                pass
        return self.for_schedule(schedule_id)


class Stack:
    """Starts, kills and restarts the services. Every process gets its own ops port and log file.

    A process is named for its service (``planner``), or for a further replica of it (``planner-2``, from
    ``add_replica``), which gets an instance id, ops port and planner data directory of its own.
    """

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.api_port = free_port()
        self.ops_ports = {name: free_port() for name in SERVICES}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        # Settings one process starts with on top of the stack's, by process name (a test that needs them sets and
        # clears them around a restart).
        self.overrides: dict[str, dict[str, str]] = {}

    def add_replica(self, service: str, number: int) -> str:
        """Register another process of ``service``; start it with ``start`` under the name returned."""
        name = f"{service}-{number}"
        self.ops_ports[name] = free_port()
        return name

    @staticmethod
    def service_of(name: str) -> str:
        return name.rsplit("-", 1)[0] if name.rsplit("-", 1)[-1].isdigit() else name

    def ops_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ops_ports[name]}"

    def env(self, name: str) -> dict[str, str]:
        s = self.settings
        service = self.service_of(name)
        own_port = {f"CHIME_{service.upper()}_PORT": str(self.ops_ports[name])} if service != "api" else {}
        return {
            **os.environ,
            "CHIME_DATABASE_URL": s.database_url,
            "CHIME_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "CHIME_TOPIC_PREFIX": s.topic_prefix,
            "CHIME_PARTITIONS": str(s.partitions),
            "CHIME_JWT_SECRET": s.jwt_secret.get_secret_value(),
            "CHIME_MASTER_KEY": s.master_key.get_secret_value(),
            "CHIME_ALLOW_PRIVATE_TARGETS": "true",
            "CHIME_RATE_LIMIT_PER_SECOND": "100000",
            "CHIME_RUN_NOW_PER_MINUTE": "1000000",
            "CHIME_REPLAYS_PER_MINUTE": "1000000",
            "CHIME_MAX_FIRES_PER_SECOND_PER_TENANT": "100000",
            "CHIME_API_PORT": str(self.api_port),
            "CHIME_API_WORKERS": str(s.api_workers),
            "CHIME_PLANNER_PORT": str(self.ops_ports["planner"]),
            "CHIME_EXECUTOR_PORT": str(self.ops_ports["executor"]),
            "CHIME_RECORDER_PORT": str(self.ops_ports["recorder"]),
            "CHIME_DLQ_PORT": str(self.ops_ports["dlq"]),
            "CHIME_PLANNER_DATA_DIR": str(self.log_dir / "planner-data"),
            "CHIME_INSTANCE_ID": f"{s.topic_prefix}{name}",
            "CHIME_OUTBOX_POLL_INTERVAL_MS": "50",
            "CHIME_LOG_LEVEL": "INFO",
            **own_port,
            **self.overrides.get(name, {}),
        }

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, name: str) -> None:
        with (self.log_dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "services.cli", self.service_of(name)],
                env=self.env(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lower_priority(self.service_of(name)),  # noqa: PLW1509 - os.nice only, no locks taken
            )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def terminate(self, name: str, timeout: float = 30) -> int:
        proc = self.procs.pop(name)
        proc.terminate()
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return -9

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.log_dir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def ready_url(self, name: str) -> str:
        """Readiness: the API's liveness (it takes writes while Kafka is away), the others' ``/health/detailed``."""
        return f"{self.api_url}/health" if name == "api" else f"{self.ops_url(name)}/health/detailed"

    async def health(self, name: str) -> dict[str, Any]:
        """A service's readiness body, whatever its status (empty when it does not answer)."""
        url = self.ready_url(name)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                body = (await client.get(url)).json()
        except (httpx.TransportError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}

    async def wait_healthy(self, name: str, timeout: float = 60) -> None:
        url = self.ready_url(name)
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                proc = self.procs.get(name)
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{name} not healthy within {timeout}s:\n{self.log_tail(name)}")

    async def start_all(self) -> None:
        for name in SERVICES:
            self.start(name)
        for name in SERVICES:
            await self.wait_healthy(name)

    def stop_all(self) -> dict[str, int]:
        return {name: self.terminate(name) for name in list(self.procs)}


def run_module(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m args`` from the repository root, with this environment; output captured."""
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def frozen(stack: Stack, name: str) -> Iterator[None]:
    """SIGSTOP a service: it keeps its partitions but applies nothing (a long pause, a stuck event loop)."""
    proc = stack.procs[name]
    proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGCONT)


async def eventually(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check`` until it returns something truthy or ``timeout`` passes; returns its last result."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result or asyncio.get_running_loop().time() > deadline:
            return result
        await asyncio.sleep(0.3)


def grid(first: datetime, last: datetime, step_s: float, anchor: datetime) -> list[datetime]:
    """Every anchor + k·step within [first, last]."""
    from datetime import timedelta

    step = timedelta(seconds=step_s)
    k = -((anchor - first) // step)
    out = []
    while anchor + k * step <= last:
        if anchor + k * step >= first:
            out.append(anchor + k * step)
        k += 1
    return out


__all__ = [
    "Any",
    "Arrival",
    "RecordingSink",
    "Reply",
    "Stack",
    "eventually",
    "free_port",
    "frozen",
    "grid",
    "run_module",
]
