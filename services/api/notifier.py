"""Delivers operational notifications (``/api/notification-endpoints``): a task in every API process that relays.

Notifications are rows written in the transaction of what they report (the recorder's run and health writes, the
API's auto-pause), one per subscribed endpoint. A round takes due rows with a lease (``FOR UPDATE SKIP LOCKED``,
so API replicas share the work and a crash only delays a row by the lease), signs each with the tenant's keys
(Standard Webhooks, ``webhook-id`` = the notification id) and posts it as a CloudEvent. A failure is tried again
with backoff until the notification is 24 hours old, then dropped and counted. Runs never wait for any of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.background import BackgroundTask
from services.api.db.keys_repo import SigningKeyRepository
from shared.events.envelope import CONTENT_TYPE
from shared.events.notifications import NotificationType, notification_body
from shared.httpclient import HttpClient, HttpError, InvalidRequest
from shared.resolver import BlockedTarget, GuardedResolver
from shared.timefmt import utcnow
from shared.version import chime_version
from shared.webhook_signing import sign

log = logging.getLogger(__name__)

_POLL_S = 1.0
_BATCH = 50
_LEASE_S = 60
_TIMEOUT_S = 10.0
_FIRST_RETRY_S = 5.0
_MAX_RETRY_S = 3600.0
GIVE_UP_AFTER = timedelta(hours=24)
# Delivered rows are kept a while: a run event delivered twice to the recorder finds its notification and does
# not make a second one.
_KEEP_DELIVERED = timedelta(hours=48)
_PRUNE_EVERY_S = 600.0
_KEY_CACHE_S = 60.0

_CLAIM = text(
    """
UPDATE notifications AS n
SET next_attempt_at = now() + make_interval(secs => :lease)
FROM (
  SELECT id FROM notifications
  WHERE delivered_at IS NULL AND next_attempt_at <= now()
  ORDER BY next_attempt_at
  LIMIT :limit
  FOR UPDATE SKIP LOCKED
) AS due, notification_endpoints AS e
WHERE n.id = due.id AND e.id = n.endpoint_id
RETURNING n.id, n.tenant_id, n.event_type, n.subject, n.data, n.created_at, n.attempts, e.url
"""
)
_DELIVERED = text(
    "UPDATE notifications SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = :id"
)
_FAILED = text(
    """
UPDATE notifications
SET attempts = attempts + 1, last_error = :error, next_attempt_at = now() + make_interval(secs => :wait)
WHERE id = :id
"""
)
_DROP = text("DELETE FROM notifications WHERE id = :id")
_PRUNE = text("DELETE FROM notifications WHERE delivered_at < :before")


def notification_client(*, allow_private: bool) -> HttpClient:
    """The executor's client, SSRF guard included: an endpoint is checked at every connection, as a target is."""
    return HttpClient(
        GuardedResolver(allow_private=allow_private), excerpt_limit=256, user_agent=f"Chime/{chime_version()}"
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    error: str | None = None


def retry_delay(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling from 5 s to an hour, jittered."""
    base: float = min(_MAX_RETRY_S, _FIRST_RETRY_S * 2.0 ** min(attempts - 1, 20))
    return base * (0.8 + 0.4 * random.random())  # noqa: S311 - spreading retries, not security


class NotifierMetrics:
    def __init__(self, sent: Counter, dropped: Counter) -> None:
        self.delivered = sent.labels("delivered")
        self.failed = sent.labels("failed")
        self.dropped = dropped


class Notifier(BackgroundTask):
    name = "notifier"

    def __init__(
        self,
        engine: AsyncEngine,
        keys: SigningKeyRepository,
        client: HttpClient,
        metrics: NotifierMetrics,
        poll_s: float = _POLL_S,
    ) -> None:
        super().__init__()
        self._engine = engine
        self._keys = keys
        self._client = client
        self._metrics = metrics
        self._poll_s = poll_s
        self._secrets: dict[str, tuple[float, list[str]]] = {}

    async def stop(self) -> None:
        await super().stop()
        await self._client.close()

    async def _run(self) -> None:
        next_prune = 0.0
        while True:
            try:
                if time.monotonic() >= next_prune:
                    async with self._engine.begin() as conn:
                        await conn.execute(_PRUNE, {"before": utcnow() - _KEEP_DELIVERED})
                    next_prune = time.monotonic() + _PRUNE_EVERY_S
                if await self.deliver_once():
                    continue  # there may be more due
            except Exception as exc:  # noqa: BLE001 - a database restart: the notifications wait in their table
                log.warning("notifications not delivered yet: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(self._poll_s)

    async def deliver_once(self, limit: int = _BATCH) -> int:
        """Send one round of due notifications; how many were tried."""
        async with self._engine.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"limit": limit, "lease": _LEASE_S})).all()
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._send(row) for row in rows))
        now = utcnow()
        async with self._engine.begin() as conn:
            for row, outcome in zip(rows, outcomes, strict=True):
                if outcome.delivered:
                    self._metrics.delivered.inc()
                    await conn.execute(_DELIVERED, {"id": row.id})
                    continue
                self._metrics.failed.inc()
                if now - row.created_at >= GIVE_UP_AFTER:
                    self._metrics.dropped.inc()
                    log.warning(
                        "notification dropped after 24 h of failures: %s",
                        outcome.error,
                        extra={"tenant": row.tenant_id, "notification": str(row.id), "type": row.event_type},
                    )
                    await conn.execute(_DROP, {"id": row.id})
                else:
                    wait = retry_delay(row.attempts + 1)
                    await conn.execute(_FAILED, {"id": row.id, "error": outcome.error, "wait": wait})
        return len(rows)

    async def _send(self, row: Any) -> Outcome:
        try:
            body = notification_body(
                NotificationType(row.event_type), row.id, row.tenant_id, row.subject, row.created_at, row.data
            )
            secrets = await self._signing_secrets(row.tenant_id)
        except Exception as exc:  # noqa: BLE001 - a row that cannot be sent now is tried again like a failed call
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
        timestamp = int(time.time())
        notification_id = str(row.id)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "webhook-id": notification_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(notification_id, timestamp, body, secrets),
            "Chime-Notification-Type": row.event_type,
        }
        try:
            response = await self._client.request("POST", row.url, headers, body, deadline_s=_TIMEOUT_S)
        except BlockedTarget as exc:
            return Outcome(False, f"blocked target: {exc}")
        except InvalidRequest as exc:
            return Outcome(False, f"invalid request: {exc}")
        except TimeoutError:
            return Outcome(False, f"timed out after {_TIMEOUT_S:g}s")
        except (HttpError, OSError) as exc:
            return Outcome(False, f"{type(exc).__name__}: {exc}"[:500])
        if 200 <= response.status < 300:
            return Outcome(True)
        return Outcome(False, f"HTTP {response.status}")

    async def _signing_secrets(self, tenant: str) -> list[str]:
        cached = self._secrets.get(tenant)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        keys = await self._keys.active(tenant)
        secrets = [k.secret for k in keys]
        self._secrets[tenant] = (now + _KEY_CACHE_S, secrets)
        return secrets
