"""Console sign-in through OpenID Connect against a provider on loopback: discovery, the authorization code flow
with PKCE, the provider's RS256 token accepted by the API's own verifier, and the refusals (a stale state, a
provider that says no, a token the API does not accept)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from services.api.app import create_app
from services.api.console.session import COOKIE
from shared.settings import Settings
from tests.e2e.stack import free_port
from tests.integration.keyserver import AUDIENCE, ISSUER, KeyServer, serving

CLIENT_ID, CLIENT_SECRET = "chime-console", "console-secret"


@dataclass
class Provider:
    """Discovery, authorize (signs the user straight in), token (checks the code, PKCE and client secret), JWKS."""

    keys: KeyServer
    kid: str
    tenant: str
    port: int = field(default_factory=free_port)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.base,
                "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token",
                "jwks_uri": self.keys.url,
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID and q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"]}
        raise web.HTTPFound(f"{q['redirect_uri']}?code={code}&state={q['state']}")

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        issued = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            request.headers.get("Authorization") != expected
            or issued is None
            or issued["challenge"] != challenge
            or issued["redirect_uri"] != form.get("redirect_uri")
        ):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = self.keys.token(self.kid, tenant=self.tenant, **self.claims)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 300})


@pytest.fixture
async def provider(idp: KeyServer, tenant: str) -> AsyncIterator[Provider]:
    server = Provider(keys=idp, kid=idp.add_key(), tenant=tenant)
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", server.discovery)
    app.router.add_get("/authorize", server.authorize)
    app.router.add_post("/token", server.token)
    async with serving(app, server.port):
        yield server


@pytest.fixture
async def console(settings: Settings, idp: KeyServer, provider: Provider) -> AsyncIterator[httpx.AsyncClient]:
    configured = settings.model_copy(
        update={
            "jwt_jwks_url": idp.url,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "oidc_issuer": provider.base,
            "oidc_client_id": CLIENT_ID,
            "oidc_client_secret": SecretStr(CLIENT_SECRET),
        }
    )
    app = create_app(configured, run_relay=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as client:
            yield client


async def _to_provider_and_back(console: httpx.AsyncClient) -> tuple[httpx.Response, str]:
    start = await console.get("/ui/login/oidc", params={"next": "/ui/schedules?status=active"})
    assert start.status_code == 303, start.text
    authorize = start.headers["location"]
    async with httpx.AsyncClient() as browser_elsewhere:
        answered = await browser_elsewhere.get(authorize)
    assert answered.status_code == 302
    back = urlsplit(answered.headers["location"])
    assert back.path == "/ui/login/callback"
    return await console.get(f"{back.path}?{back.query}"), authorize


async def test_sign_in_through_the_provider(console: httpx.AsyncClient, provider: Provider, tenant: str) -> None:
    login = await console.get("/ui/login")
    assert "/ui/login/oidc" in login.text, "the sign-in page offers the provider"
    callback, authorize = await _to_provider_and_back(console)
    query = parse_qs(urlsplit(authorize).query)
    assert query["scope"] == ["openid"] and query["redirect_uri"] == ["http://chime.test/ui/login/callback"]
    assert callback.status_code == 200, callback.text
    # A same-site page moves the browser on, so the SameSite=Strict session cookie is sent with the next request.
    assert 'http-equiv="refresh" content="0;url=/ui/schedules?status=active"' in callback.text
    assert COOKIE in callback.headers["set-cookie"]
    page = await console.get("/ui/schedules?status=active")
    assert page.status_code == 200 and tenant in page.text
    assert provider.token_requests[0]["grant_type"] == "authorization_code"


async def test_a_stale_or_refused_sign_in_leaves_no_session(console: httpx.AsyncClient, provider: Provider) -> None:
    await console.get("/ui/login/oidc")
    stale = await console.get("/ui/login/callback", params={"code": "x", "state": "not-the-one"})
    assert stale.status_code == 400 and "stale" in stale.text
    refused = await console.get("/ui/login/callback", params={"error": "access_denied", "state": "whatever"})
    assert refused.status_code == 400
    start = await console.get("/ui/login/oidc")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    denied = await console.get("/ui/login/callback", params={"error": "access_denied", "state": state})
    assert denied.status_code == 401 and "access_denied" in denied.text
    bad_code = await console.get("/ui/login/callback", params={"code": "forged", "state": state})
    assert bad_code.status_code == 502 and "refused" in bad_code.text
    for response in (stale, refused, denied, bad_code):
        assert COOKIE not in response.headers.get("set-cookie", "")
    assert (await console.get("/ui/schedules")).status_code == 303


async def test_a_provider_token_the_api_refuses_is_not_a_session(
    console: httpx.AsyncClient, provider: Provider
) -> None:
    provider.claims = {"aud": f"not-{uuid.uuid4().hex[:4]}"}
    callback, _ = await _to_provider_and_back(console)
    assert callback.status_code == 401 and "not accepted by the API" in callback.text
    assert COOKIE not in callback.headers.get("set-cookie", "")
