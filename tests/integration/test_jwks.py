"""RS256 tokens checked against a real key set (JWKS) served on loopback: lookup by ``kid``, caching, rotation,
the registered claims, and the algorithm-confusion attack."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from services.api.app import create_app
from services.api.auth import TokenVerifier
from services.api.errors import Unauthorized
from shared.settings import Settings
from tests.integration.keyserver import AUDIENCE, ISSUER, KeyServer

COOLDOWN_S = 0.5


def _rs256(settings: Settings, idp: KeyServer) -> Settings:
    return settings.model_copy(
        update={
            "jwt_jwks_url": idp.url,
            "jwt_issuer": ISSUER,
            "jwt_audience": AUDIENCE,
            "jwt_jwks_refresh_cooldown_seconds": COOLDOWN_S,
        }
    )


async def test_tokens_are_checked_against_the_key_named_by_kid(settings: Settings, idp: KeyServer) -> None:
    first, second = idp.add_key(), idp.add_key()
    verifier = TokenVerifier(_rs256(settings, idp))
    for kid in (first, second):
        principal = await verifier.verify(idp.token(kid, sub=f"user-{kid}"))
        assert principal.tenant == "acme" and principal.subject == f"user-{kid}"
    # A token whose header names one key but which another key signed is refused.
    forged = idp.token(first, private=idp.keys[second])
    with pytest.raises(Unauthorized):
        await verifier.verify(forged)


async def test_the_key_set_is_cached_and_refetched_for_a_new_kid(settings: Settings, idp: KeyServer) -> None:
    old = idp.add_key()
    verifier = TokenVerifier(_rs256(settings, idp))
    for n in range(20):
        await verifier.verify(idp.token(old, sub=f"user-{n}"))
    assert idp.fetches == 1, "twenty tokens, one fetch of the key set"

    # The provider rotates: a new key appears and the old one is withdrawn. Within the refresh cooldown after the
    # last fetch an unknown kid is refused without a fetch; after it, the key set is fetched again and the key found.
    new = idp.add_key()
    withdrawn = idp.keys.pop(old)
    await asyncio.sleep(COOLDOWN_S + 0.1)
    assert (await verifier.verify(idp.token(new))).tenant == "acme"
    assert idp.fetches == 2, "an unknown kid fetches the key set again"
    await asyncio.sleep(COOLDOWN_S + 0.1)
    with pytest.raises(Unauthorized):
        await verifier.verify(idp.token(old, private=withdrawn, sub="late"))
    assert idp.fetches == 3, "a withdrawn kid is looked for once more, then refused"
    newest = idp.add_key()
    with pytest.raises(Unauthorized):
        await verifier.verify(idp.token(newest))
    assert idp.fetches == 3, "within the cooldown, an unknown kid does not fetch again"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://someone-else.test/"}, "issuer"),
        ({"aud": "another-api"}, "audience"),
        ({"nbf": 600}, "not yet valid"),
        ({"exp": -60}, "expired"),
    ],
)
async def test_registered_claims_are_enforced(
    settings: Settings, idp: KeyServer, claims: dict[str, Any], reason: str
) -> None:
    # Time claims are given as seconds from now, taken when the test runs (collection can be many minutes earlier).
    claims = {name: int(time.time()) + value if name in ("nbf", "exp") else value for name, value in claims.items()}
    kid = idp.add_key()
    verifier = TokenVerifier(_rs256(settings, idp))
    with pytest.raises(Unauthorized):
        await verifier.verify(idp.token(kid, **claims))
    assert (await verifier.verify(idp.token(kid))).tenant == "acme", f"only the {reason} claim was wrong"


async def test_an_hs256_token_signed_with_the_public_key_is_refused(settings: Settings, idp: KeyServer) -> None:
    kid = idp.add_key()
    public_pem = (
        idp.keys[kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    now = int(time.time())
    claims = {"sub": "mallory", "tenant": "acme", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300}
    # PyJWT itself refuses to use a PEM public key as an HMAC secret; sign by hand as an attacker would.
    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
    signing_input = header + b"." + payload
    signature = jwt.utils.base64url_encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest())
    confused = (signing_input + b"." + signature).decode()
    with pytest.raises(Unauthorized):
        await TokenVerifier(_rs256(settings, idp)).verify(confused)


async def test_the_api_serves_a_caller_with_an_rs256_token(settings: Settings, idp: KeyServer) -> None:
    kid = idp.add_key()
    app = create_app(_rs256(settings, idp), run_relay=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chime.test") as client:
            token = idp.token(kid, tenant=f"rs-{uuid.uuid4().hex[:6]}", scope="schedules:read")
            ok = await client.get("/api/schedules", headers={"Authorization": f"Bearer {token}"})
            assert ok.status_code == 200, ok.text
            hs_claims = {"sub": "x", "tenant": "acme", "exp": int(time.time()) + 60}
            hs = jwt.encode(hs_claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
            refused = await client.get("/api/schedules", headers={"Authorization": f"Bearer {hs}"})
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
