"""Signing keys as they reach executors: ciphertext only (design.md §2)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shared.types import Instant


class EncryptedSigningKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: str
    ciphertext: str
    created_at: Instant
    expires_at: Instant | None = None


class SigningKeysData(BaseModel):
    """All of a tenant's active keys; the newest record per tenant wins on the compacted topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    version: int
    keys: list[EncryptedSigningKey]
