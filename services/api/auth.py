"""JWT bearer auth: who calls, for which tenant, with which scopes."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request

from services.api.errors import MissingScope, Unauthorized
from services.api.ratelimit import RateLimiter
from shared.settings import Settings

ADMIN = "admin"
ALL_SCOPES = frozenset({"schedules:read", "schedules:write", "runs:read", "dlq:read", "dlq:write", ADMIN})
DEFAULT_SCOPES = ALL_SCOPES - {ADMIN}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
SCOPE_ATTRIBUTE = "chime_scope"
# Verified tokens are remembered this long at most (and never past their ``exp``): a client sends the same token
# with every request, and checking its signature again costs more than the rest of a simple request. With a key
# set (JWKS), it also bounds how long a token signed by a withdrawn key is still accepted.
_VERIFIED_TTL_S = 60.0
_VERIFIED_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    tenant: str
    scopes: frozenset[str]
    expires_at: float = 0.0  # the token's ``exp``


class TokenVerifier:
    """Checks signatures, ``exp`` always, and ``iss``/``aud`` when configured. Only one algorithm is accepted."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._jwks: jwt.PyJWKClient | None = (
            # The key set is cached (five minutes); single keys are not: PyJWT's per-kid cache kept a key the
            # provider had withdrawn for as long as the process lived.
            jwt.PyJWKClient(
                settings.jwt_jwks_url,
                cache_keys=False,
                cooldown_duration=settings.jwt_jwks_refresh_cooldown_seconds,
            )
            if settings.jwt_jwks_url
            else None
        )
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if now < known[1]:
                return known[0]
            del self._verified[token]
        principal, expires = await self._verify(token)
        self._verified[token] = (principal, min(expires, now + _VERIFIED_TTL_S))
        if len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and the time its ``exp`` claim ends it."""
        try:
            if self._jwks is not None:
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key: Any = signing_key.key
                algorithms = ["RS256"]
            else:
                key = self._settings.jwt_secret.get_secret_value()
                algorithms = ["HS256"]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._settings.jwt_issuer,
                audience=self._settings.jwt_audience,
                options={"require": ["exp", "sub"], "verify_aud": self._settings.jwt_audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", headers=_CHALLENGE) from exc
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as exc:
            raise Unauthorized(f"invalid token: {exc}", headers=_CHALLENGE) from exc
        tenant = claims.get("tenant")
        if not isinstance(tenant, str) or not tenant or len(tenant) > 200:
            raise Unauthorized("token has no tenant claim", headers=_CHALLENGE)
        scope = claims.get("scope")
        scopes = frozenset(scope.split()) if isinstance(scope, str) else DEFAULT_SCOPES
        expires = float(claims["exp"])
        return Principal(subject=str(claims["sub"]), tenant=tenant, scopes=scopes, expires_at=expires), expires


def mint_token(
    settings: Settings, *, tenant: str, subject: str = "dev", scope: str | None = None, ttl_seconds: int = 3600
) -> str:
    """A token signed with ``CHIME_JWT_SECRET``, for development and tests."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "tenant": tenant, "iat": now, "exp": now + ttl_seconds}
    if scope is not None:
        claims["scope"] = scope
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def current_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token", headers=_CHALLENGE)
    verifier: TokenVerifier = request.app.state.verifier
    principal = await verifier.verify(token.strip())
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.check(principal.tenant)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_scope(scope: str) -> Any:
    async def _check(principal: CurrentPrincipal) -> Principal:
        if scope not in principal.scopes and ADMIN not in principal.scopes:
            raise MissingScope(f"this call needs the scope {scope!r}")
        return principal

    setattr(_check, SCOPE_ATTRIBUTE, scope)  # the OpenAPI document names each operation's scope from it
    return Depends(_check)


ReadSchedules = Annotated[Principal, require_scope("schedules:read")]
WriteSchedules = Annotated[Principal, require_scope("schedules:write")]
ReadRuns = Annotated[Principal, require_scope("runs:read")]
ReadDlq = Annotated[Principal, require_scope("dlq:read")]
WriteDlq = Annotated[Principal, require_scope("dlq:write")]
