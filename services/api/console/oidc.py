"""OpenID Connect sign-in for the console: authorization code flow with PKCE. The provider's token is then used
as the API's bearer token, so it must be one the API accepts (``CHIME_JWT_JWKS_URL`` set to the provider's keys,
and a ``tenant`` claim)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict

from shared.settings import Settings

_DISCOVERY_TTL_S = 3600.0
_TIMEOUT_S = 10.0


class OidcError(Exception):
    """The provider could not be reached, or answered something other than a token."""


class Discovery(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    authorization_endpoint: str
    token_endpoint: str


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the browser carries (in a short-lived cookie) from the redirect to the callback."""

    state: str
    verifier: str
    next_path: str

    @property
    def challenge(self) -> str:
        digest = hashlib.sha256(self.verifier.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    @classmethod
    def new(cls, next_path: str) -> Attempt:
        return cls(state=secrets.token_urlsafe(24), verifier=secrets.token_urlsafe(48), next_path=next_path)


class OidcClient:
    def __init__(self, settings: Settings) -> None:
        if not settings.oidc_issuer or not settings.oidc_client_id:
            raise ValueError("OIDC needs CHIME_OIDC_ISSUER and CHIME_OIDC_CLIENT_ID")
        self._settings = settings
        self._issuer = settings.oidc_issuer.rstrip("/")
        self._client_id = settings.oidc_client_id
        self._discovery: tuple[Discovery, float] | None = None

    async def discovery(self) -> Discovery:
        if self._discovery is not None and time.monotonic() < self._discovery[1]:
            return self._discovery[0]
        url = f"{self._issuer}/.well-known/openid-configuration"
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_S) as client:
                response = await client.get(url)
                response.raise_for_status()
                found = Discovery.model_validate(response.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the OIDC provider's discovery document could not be read: {exc}") from exc
        self._discovery = (found, time.monotonic() + _DISCOVERY_TTL_S)
        return found

    async def authorization_url(self, attempt: Attempt, redirect_uri: str) -> str:
        endpoint = (await self.discovery()).authorization_endpoint
        query = httpx.QueryParams(
            response_type="code",
            client_id=self._client_id,
            redirect_uri=redirect_uri,
            scope=self._settings.oidc_scopes,
            state=attempt.state,
            code_challenge=attempt.challenge,
            code_challenge_method="S256",
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def exchange(self, code: str, attempt: Attempt, redirect_uri: str) -> str:
        """The token the API is to receive, from the provider's token endpoint."""
        form: dict[str, Any] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self._client_id,
            "code_verifier": attempt.verifier,
        }
        secret = self._settings.oidc_client_secret
        auth = httpx.BasicAuth(self._client_id, secret.get_secret_value()) if secret else None
        endpoint = (await self.discovery()).token_endpoint
        try:
            async with httpx.AsyncClient(timeout=_TIMEOUT_S, auth=auth) as client:
                response = await client.post(endpoint, data=form)
                response.raise_for_status()
                body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"the OIDC provider refused the sign-in: {exc}") from exc
        token = body.get(self._settings.oidc_token) if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise OidcError(f"the OIDC provider's answer has no {self._settings.oidc_token}")
        return token
