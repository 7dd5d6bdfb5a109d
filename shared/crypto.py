"""Encryption of webhook signing secrets at rest and in transit (``CHIME_MASTER_KEY``)."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

from shared.errors import ChimeError

SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret


class SecretDecryptError(ChimeError):
    """The ciphertext was not made with this master key."""


class SecretBox:
    def __init__(self, master_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(master_key.encode()).digest()))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptError("signing secret does not decrypt with CHIME_MASTER_KEY") from exc


def generate_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))
