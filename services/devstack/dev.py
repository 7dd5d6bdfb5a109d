"""``chime dev`` (``make run``): the whole stack in the foreground on embedded defaults; Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from services.devstack.priority import lower_priority
from services.devstack.stack import STATE_DIR, dev_secrets, up, write_env_file

DEV_ENV = STATE_DIR / "dev.env"
LOG_DIR = STATE_DIR / "logs"
# The services `chime dev` runs, each as its own process, in start order.
SERVICES: tuple[str, ...] = ("api", "recorder", "planner", "executor", "dlq")
SINK_PORT = 9000
DEMO_IDEMPOTENCY_KEY = "chime-dev-demo-schedule"


def _spawn(name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = (LOG_DIR / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", name],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=lower_priority(name),  # noqa: PLW1509 - os.nice only, no locks taken
    )


def wait_http(url: str, timeout: float) -> bool:
    """Whether ``url`` answered 200 within ``timeout`` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def _stop(procs: dict[str, subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_dev() -> int:
    stack = up()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        values = {
            **stack.env,
            **dev_secrets(),
            "CHIME_ENV": "dev",
            "CHIME_ALLOW_PRIVATE_TARGETS": "true",
            "CHIME_LOG_FORMAT": "console",
        }
        write_env_file(DEV_ENV, values)
        env = {**os.environ, **values}
        for step in (["migrate"], ["topics", "create"]):
            subprocess.run([sys.executable, "-m", "services.cli", *step], env=env, check=True)
        for name in SERVICES:
            procs[name] = _spawn(name, env)
        from shared.settings import load_settings

        settings = load_settings(**{k.removeprefix("CHIME_").lower(): v for k, v in values.items()})
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        if not wait_http(f"{api_url}/health", timeout=30):
            print(f"the API did not come up; see {LOG_DIR / 'api.log'}", file=sys.stderr)
            return 1
        from services.api.auth import mint_token

        token = mint_token(settings, tenant="demo", subject="dev", ttl_seconds=7 * 86_400)
        sink_log = LOG_DIR / "sink.log"
        with (LOG_DIR / "sink.out").open("ab") as sink_out:
            procs["sink"] = subprocess.Popen(
                [sys.executable, "-m", "services.devstack.sink", str(SINK_PORT), str(sink_log), api_url, token],
                env=env,
                stdout=sink_out,
                stderr=subprocess.STDOUT,
            )
        demo = create_demo(api_url, token)
        _banner(api_url, token, sink_log, demo)
        while not stopping:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; see {LOG_DIR / (name + '.log')}", file=sys.stderr)
                    stopping = True
            time.sleep(0.5)
        return 0
    finally:
        print("\nstopping ...", file=sys.stderr)
        _stop(procs)
        stack.down()
        print("stopped", file=sys.stderr)


def create_demo(api_url: str, token: str, hook_url: str = f"http://127.0.0.1:{SINK_PORT}/hook") -> str:
    """A demo schedule that fires every 5 s into the sink at ``hook_url`` (created once per sink; later runs reuse
    it)."""
    import hashlib

    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    existing = httpx.get(f"{api_url}/api/schedules", params={"name": "demo: every 5 s"}, headers=headers).json()
    for item in existing["items"]:
        if item["payload"]["url"] == hook_url:
            schedule_id: str = item["id"]
            return schedule_id
    body = {
        "name": "demo: every 5 s",
        "type": "interval",
        "interval_seconds": 5,
        "payload": {"url": hook_url, "body": {"hello": "from Chime"}},
    }
    key = f"{DEMO_IDEMPOTENCY_KEY}-{hashlib.sha256(hook_url.encode()).hexdigest()[:16]}"
    response = httpx.post(f"{api_url}/api/schedules", json=body, headers={**headers, "Idempotency-Key": key})
    response.raise_for_status()
    created: str = response.json()["id"]
    return created


def _banner(api_url: str, token: str, sink_log: Path, demo: str) -> None:
    print(
        f"""
Chime is running (settings in {DEV_ENV.relative_to(Path.cwd()) if DEV_ENV.is_relative_to(Path.cwd()) else DEV_ENV}).
  API:     {api_url}   (docs: {api_url}/docs)
  Console: {api_url}/ui/   (sign in with the token below)
  Demo:    schedule {demo} fires every 5 s into the local sink
           tail -f {sink_log}
           curl -s -H "Authorization: Bearer $TOKEN" {api_url}/api/schedules/{demo}/runs
  Logs:    {LOG_DIR}/
  Token (tenant "demo", 7 days):
    export TOKEN={token}
  Try:
    curl -s -H "Authorization: Bearer $TOKEN" {api_url}/api/schedules
  More tokens: .venv/bin/chime token --tenant demo
Press Ctrl-C to stop everything.
""",
        flush=True,
    )
