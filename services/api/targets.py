"""Create-time checks of a webhook target against the SSRF policy (the executor checks again at connect)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from shared.errors import InvalidSchedule
from shared.netpolicy import is_blocked_address, parse_literal_address

_RESOLVE_TIMEOUT_S = 2.0


async def check_target(url: str, *, allow_private: bool, field: str = "payload.url") -> None:
    """Refuse literal or resolved addresses in blocked ranges. A host that does not resolve yet is accepted."""
    if allow_private:
        return
    host = urlsplit(url).hostname or ""
    literal = parse_literal_address(host)
    if literal is not None:
        if is_blocked_address(literal):
            raise InvalidSchedule(field, f"target address {host} is in a blocked range")
        return
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise InvalidSchedule(field, f"target host {host} is loopback")
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=_RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError):
        return
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if is_blocked_address(address):
            raise InvalidSchedule(field, f"target host {host} resolves to a blocked address {address}")
