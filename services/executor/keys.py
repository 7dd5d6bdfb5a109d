"""Tenants' signing secrets, read from the compacted ``chime.signing-keys`` topic and decrypted in memory."""

from __future__ import annotations

import asyncio
from datetime import datetime

from shared.compacted_view import CompactedView
from shared.consumer_runtime import QuarantineTopic
from shared.crypto import SecretBox, SecretDecryptError
from shared.events import SigningKeysUpdated
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import SIGNING_KEYS


class KeyStore(CompactedView[SigningKeysUpdated]):
    """Every tenant's keys (no group: every executor needs them all), decrypted once as they arrive."""

    def __init__(self, settings: Settings, quarantine: QuarantineTopic | None = None) -> None:
        super().__init__(settings, SIGNING_KEYS, SigningKeysUpdated, quarantine)
        self._box = SecretBox(settings.master_key.get_secret_value())
        self._keys: dict[str, tuple[int, list[tuple[str, datetime | None]]]] = {}

    def secrets_for(self, tenant: str, now: datetime | None = None) -> list[str]:
        """The tenant's secrets still valid at ``now`` (the clock's now when not given)."""
        entry = self._keys.get(tenant)
        if entry is None:
            return []
        if now is None:
            now = utcnow()
        return [secret for secret, expires in entry[1] if expires is None or expires > now]

    async def wait_for(self, tenant: str, wait_seconds: float) -> list[str]:
        async def _has() -> list[str]:
            async with self._changed:
                await self._changed.wait_for(lambda: bool(self.secrets_for(tenant)))
            return self.secrets_for(tenant)

        try:
            return await asyncio.wait_for(_has(), wait_seconds)
        except TimeoutError:
            return []

    def _take(self, event: SigningKeysUpdated) -> str | None:
        data = event.data
        held = self._keys.get(data.tenant_id)
        if held is not None and held[0] >= data.version:
            return None
        try:
            keys = [(self._box.decrypt(k.ciphertext), k.expires_at) for k in data.keys]
        except SecretDecryptError:
            return f"signing keys of tenant {data.tenant_id} do not decrypt with CHIME_MASTER_KEY"
        self._keys[data.tenant_id] = (data.version, keys)
        return None
