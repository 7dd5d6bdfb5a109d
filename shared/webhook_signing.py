"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import lru_cache

from shared.crypto import secret_bytes


@lru_cache(maxsize=4096)
def _keyed(secret: str) -> hmac.HMAC:
    """An HMAC with the secret's key already set up; each signature continues a copy of it."""
    return hmac.new(secret_bytes(secret), digestmod=hashlib.sha256)


def sign(message_id: str, timestamp: int, body: bytes, secrets: list[str]) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    out = []
    for secret in secrets:
        mac = _keyed(secret).copy()
        mac.update(signed)
        out.append("v1," + base64.b64encode(mac.digest()).decode())
    return " ".join(out)


def verify(message_id: str, timestamp: int, body: bytes, header: str, secret: str) -> bool:
    """What a receiver does; used by the local sink and the tests."""
    expected = sign(message_id, timestamp, body, [secret]).split(",", 1)[1]
    return any(
        hmac.compare_digest(part.split(",", 1)[1], expected) for part in header.split() if part.startswith("v1,")
    )
