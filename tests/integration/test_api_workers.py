"""`chime api` with CHIME_API_WORKERS: several processes on one port, stopped together and never left behind."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from shared.settings import Settings
from tests.integration.helpers import auth, live_api_process, schedule_body

_TWO_WORKERS = {"CHIME_API_WORKERS": "2"}


def _workers(parent: int) -> list[int]:
    """The parent's worker processes (multiprocessing's resource tracker is a child too, but not a worker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := [p for p in pids if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def test_two_workers_serve_one_port_and_stop_cleanly(settings: Settings, tenant: str, tmp_path: Path) -> None:
    with live_api_process(settings, tmp_path / "api.log", _TWO_WORKERS) as (url, proc):
        workers = _workers(proc.pid)
        assert len(workers) == 2
        with httpx.Client(base_url=url, headers=auth(settings, tenant)) as api:
            # A new connection each time, for the kernel to hand to either worker.
            for _ in range(20):
                created = api.post("/api/schedules", json=schedule_body(), headers={"Connection": "close"})
                assert created.status_code == 201, created.text
            listed = api.get("/api/schedules", params={"limit": 50}).json()
        assert len(listed["items"]) == 20
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert _wait_gone(workers) == []


def test_a_worker_that_dies_stops_the_api_with_an_error(settings: Settings, tmp_path: Path) -> None:
    with live_api_process(settings, tmp_path / "api.log", _TWO_WORKERS) as (_, proc):
        workers = _workers(proc.pid)
        os.kill(workers[0], signal.SIGKILL)
        # The supervisor (Kubernetes, systemd, make run) sees the failure and restarts the API whole.
        assert proc.wait(timeout=20) == 1
        assert _wait_gone(workers) == []


def test_workers_do_not_outlive_a_killed_parent(settings: Settings, tmp_path: Path) -> None:
    with live_api_process(settings, tmp_path / "api.log", _TWO_WORKERS) as (_, proc):
        workers = _workers(proc.pid)
        proc.kill()
        proc.wait()
        # Otherwise they would keep the port, and the restarted API could not bind it.
        assert _wait_gone(workers) == []


def test_workers_still_starting_do_not_outlive_a_killed_parent(settings: Settings, tmp_path: Path) -> None:
    with live_api_process(settings, tmp_path / "api.log", _TWO_WORKERS, ready=False) as (_, proc):
        deadline = time.monotonic() + 10
        while len(workers := _workers(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(workers) == 2
        # Killed while the workers import and build the app, before they can ask to die with it.
        proc.kill()
        proc.wait()
        assert _wait_gone(workers) == []
