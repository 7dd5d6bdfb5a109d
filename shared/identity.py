"""Who this process is, for static consumer-group membership and the ``worker`` field of attempts."""

from __future__ import annotations

import socket

from shared.settings import Settings


def instance_id(settings: Settings, service: str) -> str:
    """``CHIME_INSTANCE_ID`` (a pod name, stable across restarts) or ``<hostname>-<service>``."""
    return settings.instance_id or f"{socket.gethostname()}-{service}"
