"""Tenants' webhook signing secrets: encrypted at rest, published encrypted to ``chime.signing-keys``."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.outbox import enqueue
from shared.crypto import SecretBox, generate_webhook_secret
from shared.db.tables import signing_keys, tenants
from shared.events import SigningKeysUpdated
from shared.events.signing import EncryptedSigningKey, SigningKeysData
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import SIGNING_KEYS


@dataclass(frozen=True, slots=True)
class SigningKey:
    id: str
    secret: str
    created_at: datetime
    expires_at: datetime | None


class SigningKeyRepository:
    def __init__(self, engine: AsyncEngine, settings: Settings, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        self._box = SecretBox(settings.master_key.get_secret_value())
        self._grace = timedelta(seconds=settings.key_rotation_grace_seconds)
        self._on_commit = on_commit
        # Tenants seen with a signing key. Keys are only ever added (rotation keeps the old ones signing for the
        # grace period beside a new one without expiry), so a tenant that had one keeps one.
        self._keyed: set[str] = set()

    async def ensure_key(self, tenant: str) -> None:
        """Make sure the tenant has a key that signs; after the first time, without asking the database."""
        if tenant not in self._keyed:
            await self.active(tenant)

    async def active(self, tenant: str) -> list[SigningKey]:
        """The tenant's keys that still sign; the first call creates the first key."""
        keys = await self._read(tenant)
        if not keys:
            async with self._engine.begin() as conn:
                await self._lock_tenant(conn, tenant)
                if not await self._active_rows(conn, tenant):
                    await self._add_key(conn, tenant)
            self._on_commit()
            keys = await self._read(tenant)
        if keys:
            self._keyed.add(tenant)
        return keys

    async def rotate(self, tenant: str) -> list[SigningKey]:
        """Add a new key; the current ones keep signing beside it for the rotation grace period."""
        now = utcnow()
        async with self._engine.begin() as conn:
            await self._lock_tenant(conn, tenant)
            await conn.execute(
                update(signing_keys)
                .where(signing_keys.c.tenant_id == tenant, signing_keys.c.expires_at.is_(None))
                .values(expires_at=now + self._grace)
            )
            await self._add_key(conn, tenant)
        self._on_commit()
        return await self._read(tenant)

    async def resync(self, tenant: str | None = None) -> int:
        """Publish every tenant's signing keys again, as their current version (``chime resync``): executors sign
        with what ``chime.signing-keys`` holds, and a broker that lost its data holds none. Returns the tenants."""
        query = select(tenants.c.id, tenants.c.signing_keys_version).where(tenants.c.signing_keys_version > 0)
        if tenant is not None:
            query = query.where(tenants.c.id == tenant)
        count = 0
        async with self._engine.begin() as conn:
            for owner, version in (await conn.execute(query.order_by(tenants.c.id))).all():
                await self._publish(conn, owner, version)
                count += 1
        self._on_commit()
        return count

    async def _publish(self, conn: AsyncConnection, tenant: str, version: int) -> None:
        data = SigningKeysData(tenant_id=tenant, version=version, keys=await self._active_rows(conn, tenant))
        event = SigningKeysUpdated(subject=tenant, tenant=tenant, time=utcnow(), data=data)
        await enqueue(conn, event, SIGNING_KEYS, key=tenant, aggregate_id=f"tenant:{tenant}", version=version)

    async def _lock_tenant(self, conn: AsyncConnection, tenant: str) -> None:
        await conn.execute(pg_insert(tenants).values(id=tenant).on_conflict_do_nothing())
        await conn.execute(select(tenants.c.id).where(tenants.c.id == tenant).with_for_update())

    async def _active_rows(self, conn: AsyncConnection, tenant: str) -> list[EncryptedSigningKey]:
        now = utcnow()
        rows = (
            await conn.execute(
                select(signing_keys)
                .where(
                    signing_keys.c.tenant_id == tenant,
                    or_(signing_keys.c.expires_at.is_(None), signing_keys.c.expires_at > now),
                )
                .order_by(signing_keys.c.created_at.desc())
            )
        ).all()
        return [
            EncryptedSigningKey(key_id=r.id, ciphertext=r.ciphertext, created_at=r.created_at, expires_at=r.expires_at)
            for r in rows
        ]

    async def _add_key(self, conn: AsyncConnection, tenant: str) -> None:
        now = utcnow()
        key_id = "key_" + secrets.token_hex(8)
        ciphertext = self._box.encrypt(generate_webhook_secret())
        await conn.execute(
            insert(signing_keys).values(id=key_id, tenant_id=tenant, ciphertext=ciphertext, created_at=now)
        )
        version = (
            await conn.execute(
                update(tenants)
                .where(tenants.c.id == tenant)
                .values(signing_keys_version=tenants.c.signing_keys_version + 1)
                .returning(tenants.c.signing_keys_version)
            )
        ).scalar_one()
        await self._publish(conn, tenant, version)

    async def _read(self, tenant: str) -> list[SigningKey]:
        async with self._engine.connect() as conn:
            rows = await self._active_rows(conn, tenant)
        return [
            SigningKey(
                id=r.key_id, secret=self._box.decrypt(r.ciphertext), created_at=r.created_at, expires_at=r.expires_at
            )
            for r in rows
        ]
