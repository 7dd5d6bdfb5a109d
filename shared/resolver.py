"""The executor's resolver: answers only addresses Chime may call, and caches what it answered.

The HTTP client connects to exactly the addresses returned here, so the address checked is the address
connected to. A name that answers a public address once and a private one the next time (DNS rebinding)
gets the private answer filtered out, and is refused when nothing is left.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable

from shared.errors import ChimeError
from shared.netpolicy import is_blocked_address, parse_literal_address

_RESOLVE_TIMEOUT_S = 5.0
_CACHE_MAX = 10_000

# host -> the addresses it resolves to, as text; injectable so tests can play a rebinding DNS server.
Lookup = Callable[[str], Awaitable[list[str]]]


class BlockedTarget(ChimeError):
    """The target resolves only to addresses Chime does not call."""


async def system_lookup(host: str) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class GuardedResolver:
    def __init__(self, *, allow_private: bool, ttl_seconds: float = 60.0, lookup: Lookup = system_lookup) -> None:
        self._allow_private = allow_private
        self._ttl = ttl_seconds
        self._lookup = lookup
        self._cache: dict[str, tuple[float, list[str]]] = {}

    async def resolve(self, host: str) -> list[str]:
        literal = parse_literal_address(host)
        if literal is not None:
            if not self._allow_private and is_blocked_address(literal):
                raise BlockedTarget(f"{host} is an address Chime does not call")
            return [str(literal)]
        now = time.monotonic()
        cached = self._cache.get(host)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            answers = await asyncio.wait_for(self._lookup(host), _RESOLVE_TIMEOUT_S)
        except TimeoutError as exc:
            raise OSError(f"resolving {host} timed out") from exc
        allowed: list[str] = []
        refused: list[str] = []
        for answer in dict.fromkeys(answers):
            address = ipaddress.ip_address(answer.split("%", 1)[0])
            if self._allow_private or not is_blocked_address(address):
                allowed.append(str(address))
            else:
                refused.append(str(address))
        if not allowed:
            shown = ", ".join(refused) or "nothing"
            raise BlockedTarget(f"{host} resolves only to addresses Chime does not call ({shown})")
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[host] = (now + self._ttl, allowed)
        return allowed
