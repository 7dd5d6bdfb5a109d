"""``chime demo``: the demo of ``make run`` for a container stack (docker compose): a webhook receiver that logs
every call to stdout, and a schedule that fires into it every 5 s, created through the API once it answers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from services.devstack.dev import create_demo, wait_http
from services.devstack.sink import serve
from shared.settings import Settings

_API_WAIT_S = 180.0


def run_demo(settings: Settings, *, api_url: str, hook_url: str, port: int) -> int:
    from services.api.auth import mint_token

    if not wait_http(f"{api_url}/health", _API_WAIT_S):
        raise TimeoutError(f"the API at {api_url} did not answer within {_API_WAIT_S:.0f} s")
    token = mint_token(settings, tenant="demo", subject="demo", ttl_seconds=7 * 86_400)
    schedule = create_demo(api_url, token, hook_url)
    print(f"demo schedule {schedule} fires every 5 s into {hook_url}", file=sys.stderr, flush=True)
    try:
        asyncio.run(serve(port, Path("/dev/stdout"), api_url, token, host="0.0.0.0"))  # noqa: S104 - a container
    except KeyboardInterrupt:
        pass
    return 0
