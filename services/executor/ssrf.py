"""Connect-time SSRF guard: the target is resolved again right before each call (DNS rebinding)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import ChimeError
from shared.netpolicy import is_blocked_address, parse_literal_address

_RESOLVE_TIMEOUT_S = 5.0


class BlockedTarget(ChimeError):
    """The target resolves to an address Chime does not call."""


async def check_connect_target(url: str, *, allow_private: bool) -> None:
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    literal = parse_literal_address(host)
    addresses = [literal] if literal is not None else []
    if literal is None:
        loop = asyncio.get_running_loop()
        infos = await asyncio.wait_for(loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), _RESOLVE_TIMEOUT_S)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if is_blocked_address(address):
            raise BlockedTarget(f"{host} resolves to blocked address {address}")
