"""`chime health`: the container's health check. One image runs every service, so the check finds out which one
this container runs (from PID 1's command line) and asks that service's ``/health`` on its port."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from services.cli import SERVICES
from shared.settings import Settings

_TIMEOUT_S = 3.0


def port_of(settings: Settings, service: str) -> int:
    ports = {
        "api": settings.api_port,
        "planner": settings.planner_port,
        "executor": settings.executor_port,
        "recorder": settings.recorder_port,
        "dlq": settings.dlq_port,
    }
    return ports[service]


def running_service(cmdline: Path = Path("/proc/1/cmdline")) -> str | None:
    """The service PID 1 runs (`chime executor` → ``executor``), if it is one."""
    try:
        words = cmdline.read_bytes().split(b"\0")
    except OSError:
        return None
    names = [w.decode(errors="replace") for w in words if w]
    for name in names[1:]:
        if name in SERVICES:
            return name
    return None


def check(settings: Settings, service: str | None) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    name = service or running_service()
    if name is None:
        return False, "chime health: name a service; this container's PID 1 is not one"
    host = settings.api_host if name == "api" else settings.ops_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        host = "127.0.0.1"
    url = f"http://{host}:{port_of(settings, name)}/health"
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_S) as response:  # noqa: S310 - our own http URL
            return True, f"{name}: {response.status} from {url}"
    except urllib.error.HTTPError as exc:
        return False, f"{name}: {exc.code} from {url}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{name}: {url} unreachable: {getattr(exc, 'reason', exc)}"
