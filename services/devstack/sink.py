"""A local webhook receiver for ``make run``: logs every call with its lag and whether its signature verifies.

Run as ``python -m services.devstack.sink PORT LOGFILE [API_URL TOKEN]``; with the API URL and a token it
fetches the tenant's signing keys to verify ``webhook-signature`` as any Standard Webhooks receiver would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiohttp import web

from shared.webhook_signing import verify


class Sink:
    def __init__(self, log_path: Path, api_url: str | None, token: str | None) -> None:
        self._log = log_path.open("a", buffering=1)
        self._api_url = api_url
        self._token = token
        self._secrets: list[str] = []

    async def _refresh_keys(self) -> None:
        if not self._api_url or not self._token:
            return
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(
                f"{self._api_url}/api/signing-keys", headers={"Authorization": f"Bearer {self._token}"}
            )
            if response.status_code == 200:
                self._secrets = [k["secret"] for k in response.json()["items"]]

    def _verified(self, request: web.Request, body: bytes) -> bool:
        msg_id = request.headers.get("webhook-id", "")
        timestamp = int(request.headers.get("webhook-timestamp", "0") or 0)
        header = request.headers.get("webhook-signature", "")
        return any(verify(msg_id, timestamp, body, header, secret) for secret in self._secrets)

    async def handle(self, request: web.Request) -> web.Response:
        received = datetime.now(UTC)
        body = await request.read()
        signature = "unchecked"
        if self._api_url:
            if not self._verified(request, body):
                await self._refresh_keys()
            signature = "valid" if self._verified(request, body) else "INVALID"
        scheduled_for = request.headers.get("Chime-Scheduled-For")
        lag_ms = None
        if scheduled_for:
            lag_ms = round((received - datetime.fromisoformat(scheduled_for)).total_seconds() * 1000, 1)
        entry = {
            "received": received.isoformat(timespec="milliseconds"),
            "webhook_id": request.headers.get("webhook-id"),
            "schedule": request.headers.get("Chime-Schedule-Id"),
            "scheduled_for": scheduled_for,
            "attempt": request.headers.get("Chime-Attempt"),
            "lag_ms": lag_ms,
            "signature": signature,
            "body": body.decode(errors="replace")[:200],
        }
        self._log.write(json.dumps(entry) + "\n")
        return web.json_response({"ok": True})


async def serve(port: int, log_path: Path, api_url: str | None, token: str | None, host: str = "127.0.0.1") -> None:
    sink = Sink(log_path, api_url, token)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    args = sys.argv[1:]
    api, tok = (args[2], args[3]) if len(args) >= 4 else (None, None)
    try:
        asyncio.run(serve(int(args[0]), Path(args[1]), api, tok))
    except KeyboardInterrupt:
        pass
