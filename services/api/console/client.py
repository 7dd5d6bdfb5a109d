"""The console calls the REST API in-process, with the signed-in user's token, so every page goes through the
same validation, tenancy, scopes and rate limits as any other client."""

from __future__ import annotations

from typing import Any

import httpx
from starlette.types import ASGIApp

_BASE = "http://chime-console.internal"


class ApiProblem(Exception):
    """An RFC 9457 answer from the API (4xx or 5xx)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("detail") or body.get("title") or f"HTTP {status}")
        self.status = status
        self.body = body

    @property
    def detail(self) -> str:
        return str(self)

    def field_errors(self) -> dict[str, str]:
        """A 422's messages by field path (``payload.url``), the names the console's inputs carry."""
        found: dict[str, str] = {}
        for item in self.body.get("errors") or []:
            found.setdefault(str(item.get("field", "body")), str(item.get("message", "invalid")))
        return found


class ApiResult:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers = response.headers
        self.body: Any = response.json() if response.content else None


class ConsoleApi:
    """One HTTP client over the app itself, made at the first call; :meth:`close` is idempotent."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self._client: httpx.AsyncClient | None = None

    async def call(
        self,
        token: str,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResult:
        if self._client is None:
            # A 500 of the API reaches the page as an answer, not as the API's exception.
            transport = httpx.ASGITransport(app=self._app, raise_app_exceptions=False)
            self._client = httpx.AsyncClient(transport=transport, base_url=_BASE, timeout=30)
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        response = await self._client.request(method, path, params=params, json=json, headers=sent)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text[:500]}
            raise ApiProblem(response.status_code, body if isinstance(body, dict) else {"detail": str(body)})
        return ApiResult(response)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
