"""``/api/signing-keys``: the secrets a tenant's receivers verify webhook signatures with."""

from __future__ import annotations

from fastapi import APIRouter

from services.api.auth import ReadSchedules, WriteSchedules
from services.api.db.keys_repo import SigningKey
from services.api.deps import Deps
from services.api.models import SigningKeyOut, SigningKeysOut

router = APIRouter(prefix="/api/signing-keys", tags=["signing keys"])


def _out(keys: list[SigningKey]) -> SigningKeysOut:
    return SigningKeysOut(
        items=[SigningKeyOut(id=k.id, secret=k.secret, created_at=k.created_at, expires_at=k.expires_at) for k in keys]
    )


@router.get("", response_model=SigningKeysOut)
async def list_signing_keys(principal: ReadSchedules, deps: Deps) -> SigningKeysOut:
    return _out(await deps.keys.active(principal.tenant))


@router.post("/rotate", response_model=SigningKeysOut)
async def rotate_signing_keys(principal: WriteSchedules, deps: Deps) -> SigningKeysOut:
    return _out(await deps.keys.rotate(principal.tenant))
