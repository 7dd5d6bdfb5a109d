"""Tokens, tenant isolation, scopes, quotas, rate limits and the SSRF guard at create time."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from services.api.app import create_app
from shared.settings import Settings
from tests.integration.helpers import auth, live_api, schedule_body


@asynccontextmanager
async def api_with(settings: Settings, **overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second API instance over the same database, with different settings."""
    app = create_app(settings.model_copy(update=overrides), run_relay=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as client:
            yield client


async def test_another_tenants_resources_answer_404(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    created = await client.post("/api/schedules", json=schedule_body(), headers=auth(settings, tenant))
    url = f"/api/schedules/{created.json()['id']}"
    intruder = auth(settings, f"{tenant}-b")
    for method, path, body in [
        ("GET", url, None),
        ("PUT", url, schedule_body()),
        ("PATCH", url, {"name": "mine now"}),
        ("DELETE", url, None),
        ("POST", f"{url}/pause", None),
        ("GET", f"{url}/preview", None),
        ("GET", f"{url}/runs", None),
    ]:
        response = await client.request(method, path, json=body, headers=intruder)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    listed = (await client.get("/api/schedules", headers=intruder)).json()
    assert listed["items"] == []
    still = await client.get(url, headers=auth(settings, tenant))
    assert still.status_code == 200 and still.json()["version"] == 1


def _token(claims: dict[str, Any], secret: str) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def _unsigned(claims: dict[str, Any]) -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize("case", ["forged", "expired", "alg-none", "no-tenant", "no-exp", "garbage", "missing"])
async def test_bad_tokens_get_401(client: httpx.AsyncClient, settings: Settings, tenant: str, case: str) -> None:
    secret = settings.jwt_secret.get_secret_value()
    now = int(time.time())
    good = {"sub": "u", "tenant": tenant, "exp": now + 60}
    tokens = {
        "forged": _token(good, "another-secret-of-sufficient-length-xx"),
        "expired": _token({**good, "exp": now - 10}, secret),
        "alg-none": _unsigned(good),
        "no-tenant": _token({"sub": "u", "exp": now + 60}, secret),
        "no-exp": _token({"sub": "u", "tenant": tenant}, secret),
        "garbage": "not-a-jwt",
    }
    headers = {"Authorization": f"Bearer {tokens[case]}"} if case in tokens else {}
    response = await client.get("/api/schedules", headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_token_accepted_once_is_refused_after_its_exp(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    """Verified tokens are remembered between requests, but never past their ``exp``."""
    token = _token({"sub": "u", "tenant": tenant, "exp": int(time.time()) + 2}, settings.jwt_secret.get_secret_value())
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/schedules", headers=headers)).status_code == 200
    assert (await client.get("/api/schedules", headers=headers)).status_code == 200
    await asyncio.sleep(max(0.0, int(time.time()) + 3 - time.time()))
    response = await client.get("/api/schedules", headers=headers)
    assert response.status_code == 401, response.text
    assert "expired" in response.json()["detail"]


async def test_missing_scope_is_403_naming_it(client: httpx.AsyncClient, settings: Settings, tenant: str) -> None:
    read_only = auth(settings, tenant, scope="schedules:read")
    assert (await client.get("/api/schedules", headers=read_only)).status_code == 200
    response = await client.post("/api/schedules", json=schedule_body(), headers=read_only)
    assert response.status_code == 403
    assert "schedules:write" in response.json()["detail"]


async def test_quota_is_429(settings: Settings, tenant: str) -> None:
    async with api_with(settings, max_schedules_per_tenant=2) as client:
        headers = auth(settings, tenant)
        codes = [
            (await client.post("/api/schedules", json=schedule_body(), headers=headers)).status_code for _ in range(3)
        ]
        assert codes == [201, 201, 429]
        first = (await client.get("/api/schedules", headers=headers)).json()["items"][0]
        assert (await client.delete(f"/api/schedules/{first['id']}", headers=headers)).status_code == 204
        assert (await client.post("/api/schedules", json=schedule_body(), headers=headers)).status_code == 201


async def test_request_rate_is_429_with_retry_after(settings: Settings, tenant: str) -> None:
    async with api_with(settings, rate_limit_per_second=3) as client:
        headers = auth(settings, tenant)
        codes = [(await client.get("/api/schedules", headers=headers)).status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200]
        assert 429 in codes[3:]
        limited = await client.get("/api/schedules", headers=headers)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        other = await client.get("/api/schedules", headers=auth(settings, f"{tenant}-other"))
        assert other.status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "http://localhost:8080/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_targets_are_refused_when_not_allowed(settings: Settings, tenant: str, url: str) -> None:
    async with api_with(settings, allow_private_targets=False) as client:
        response = await client.post(
            "/api/schedules", json=schedule_body(payload={"url": url}), headers=auth(settings, tenant)
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "payload.url"


async def test_unresolvable_public_host_is_accepted(settings: Settings, tenant: str) -> None:
    async with api_with(settings, allow_private_targets=False) as client:
        url = "https://hooks.chime-test.invalid/x"
        response = await client.post(
            "/api/schedules", json=schedule_body(payload={"url": url}), headers=auth(settings, tenant)
        )
        assert response.status_code == 201, response.text


async def test_fire_rate_quota_is_429(settings: Settings, tenant: str) -> None:
    async with api_with(settings, max_fires_per_second_per_tenant=1) as client:
        headers = auth(settings, tenant)
        first = await client.post("/api/schedules", json=schedule_body(interval_seconds=2), headers=headers)
        second = await client.post("/api/schedules", json=schedule_body(interval_seconds=2), headers=headers)
        third = await client.post("/api/schedules", json=schedule_body(interval_seconds=2), headers=headers)
        assert (first.status_code, second.status_code, third.status_code) == (201, 201, 429)
        assert third.json()["type"].endswith("/fire-rate-exceeded")
        faster = await client.patch(
            f"/api/schedules/{first.json()['id']}", json={"interval_seconds": 1}, headers=headers
        )
        assert faster.status_code == 429
        paused = await client.post(f"/api/schedules/{second.json()['id']}/pause", headers=headers)
        assert paused.status_code == 200
        assert (
            await client.post("/api/schedules", json=schedule_body(interval_seconds=2), headers=headers)
        ).status_code == 201
        assert (await client.post(f"/api/schedules/{second.json()['id']}/resume", headers=headers)).status_code == 429
        cron = schedule_body(type="cron", interval_seconds=None, cron_expr="* * * * *")
        assert (await client.post("/api/schedules", json=cron, headers=headers)).status_code == 429
        # A delete gives its share back, and the refused changes above took nothing: the quota is exactly full again.
        assert (await client.delete(f"/api/schedules/{first.json()['id']}", headers=headers)).status_code == 204
        assert (await client.post(f"/api/schedules/{second.json()['id']}/resume", headers=headers)).status_code == 200
        assert (await client.post("/api/schedules", json=cron, headers=headers)).status_code == 429
        assert (await client.delete(f"/api/schedules/{second.json()['id']}", headers=headers)).status_code == 204
        assert (await client.post("/api/schedules", json=cron, headers=headers)).status_code == 201


async def test_a_body_over_256_kib_is_413_problem_json(
    client: httpx.AsyncClient, settings: Settings, tenant: str
) -> None:
    body = schedule_body(payload={"url": "http://127.0.0.1:9/hook", "body": {"blob": "x" * (300 * 1024)}})
    response = await client.post("/api/schedules", json=body, headers=auth(settings, tenant))
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 413

    async def chunks() -> AsyncIterator[bytes]:
        # No Content-Length: the limit holds on the bytes that arrive.
        yield b'{"name": "'
        for _ in range(40):
            yield b"y" * 8192
        yield b'"}'

    streamed = await client.post(
        "/api/schedules",
        content=chunks(),
        headers={**auth(settings, tenant), "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413, streamed.text
    small = schedule_body(payload={"url": "http://127.0.0.1:9/hook", "body": {"blob": "x" * (70 * 1024)}})
    over_payload = await client.post("/api/schedules", json=small, headers=auth(settings, tenant))
    assert over_payload.status_code == 422, "a payload body over 64 KiB is a validation error, not a 413"


async def test_the_api_answers_503_while_postgres_is_unreachable(settings: Settings, tenant: str) -> None:
    # A port nothing listens on: every query fails to connect, as during a database restart.
    unreachable = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:9/chime"})
    application = create_app(unreachable, run_relay=False)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as client:
            for call in (
                client.get("/api/schedules", headers=auth(settings, tenant)),
                client.post("/api/schedules", json=schedule_body(), headers=auth(settings, tenant)),
            ):
                response = await call
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == "application/problem+json"
                assert response.headers["Retry-After"] == "1"


async def test_the_request_rate_holds_across_api_replicas(settings: Settings, tenant: str, tmp_path: Path) -> None:
    # Two `chime api` processes on their own ports over one database, as two replicas behind a load balancer.
    with (
        live_api(settings, tmp_path / "a.log", CHIME_RATE_LIMIT_PER_SECOND="5") as url_a,
        live_api(settings, tmp_path / "b.log", CHIME_RATE_LIMIT_PER_SECOND="5") as url_b,
    ):
        async with httpx.AsyncClient(base_url=url_a) as a, httpx.AsyncClient(base_url=url_b) as b:
            headers = auth(settings, tenant)
            started = time.monotonic()
            codes = [(await (a if n % 2 else b).get("/api/schedules", headers=headers)).status_code for n in range(12)]
            elapsed = time.monotonic() - started
            allowed = codes.count(200)
            # A burst of 5, plus what refilled while the calls ran; with a bucket each, they would let 10 through.
            assert 5 <= allowed <= 5 + math.ceil(elapsed * 5), (codes, elapsed)
            assert 200 in codes[0::2] and 200 in codes[1::2], "both replicas served the tenant"
            # The bucket refills a token every 200 ms, so a slow call may find one: the next few cannot all.
            for _ in range(5):
                limited = await a.get("/api/schedules", headers=headers)
                if limited.status_code == 429:
                    break
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
            await asyncio.sleep(1.2)
            assert (await b.get("/api/schedules", headers=headers)).status_code == 200, "the bucket refills"


async def test_run_now_and_replay_caps_hold_across_api_replicas(
    settings: Settings, tenant: str, tmp_path: Path
) -> None:
    caps = {"CHIME_RUN_NOW_PER_MINUTE": "3", "CHIME_REPLAYS_PER_MINUTE": "2"}
    with (
        live_api(settings, tmp_path / "a.log", **caps) as url_a,
        live_api(settings, tmp_path / "b.log", **caps) as url_b,
    ):
        async with httpx.AsyncClient(base_url=url_a) as a, httpx.AsyncClient(base_url=url_b) as b:
            headers = auth(settings, tenant)
            created = await a.post("/api/schedules", json=schedule_body(), headers=headers)
            assert created.status_code == 201, created.text
            run_now = f"/api/schedules/{created.json()['id']}/run-now"
            codes = [(await (a if n % 2 else b).post(run_now, headers=headers)).status_code for n in range(5)]
            assert codes == [202, 202, 202, 429, 429], codes
            limited = await b.post(run_now, headers=headers)
            assert limited.headers["content-type"] == "application/problem+json"
            assert limited.json()["detail"] == "tenant exceeds 3 run-now requests per minute"
            assert int(limited.headers["Retry-After"]) == 20  # one run-now comes back every 20 s
            replay = "/api/dlq/replay"
            replays = [(await (b if n % 2 else a).post(replay, json={}, headers=headers)).status_code for n in range(3)]
            assert replays == [202, 202, 429], replays
            # Another tenant's caps are its own.
            assert (await a.post(replay, json={}, headers=auth(settings, f"{tenant}-other"))).status_code == 202
