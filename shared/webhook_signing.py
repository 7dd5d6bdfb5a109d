"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, one per secret."""

from __future__ import annotations

import base64
import hashlib
import hmac

from shared.crypto import secret_bytes


def sign(message_id: str, timestamp: int, body: bytes, secrets: list[str]) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(secret_bytes(s), signed, hashlib.sha256).digest()).decode() for s in secrets
    )


def verify(message_id: str, timestamp: int, body: bytes, header: str, secret: str) -> bool:
    """What a receiver does; used by the local sink and the tests."""
    expected = sign(message_id, timestamp, body, [secret]).split(",", 1)[1]
    return any(
        hmac.compare_digest(part.split(",", 1)[1], expected) for part in header.split() if part.startswith("v1,")
    )
