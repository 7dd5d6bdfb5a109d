"""One claim per schedule key, held only while something is working on that key.

The planner's agents and its fire loop read a schedule's entry, await the broker, then write the entry back. A
claim held across that read-await-write makes each of them see the others' writes: a schedule change cannot
be overwritten by a fire that was in flight, and a fire is never published twice.

The fire loop never waits for a claim (``try_claim``): a key that an agent holds is dropped from that turn, and
the agent puts its next fire back on the heap when it is done. Agents wait (``hold``), first come first served.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyLocks:
    def __init__(self) -> None:
        # A held key maps to the claims waiting for it, oldest first.
        self._held: dict[bytes, deque[asyncio.Future[None]]] = {}

    def try_claim(self, key: bytes) -> bool:
        """Claim ``key`` if nobody holds it; never waits."""
        if key in self._held:
            return False
        self._held[key] = deque()
        return True

    async def claim(self, key: bytes) -> None:
        """Claim ``key``, waiting for the claims before this one."""
        waiters = self._held.get(key)
        if waiters is None:
            self._held[key] = deque()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(key)  # the claim was handed over just as this waiter was cancelled
            else:
                waiters.remove(waiter)
            raise

    def release(self, key: bytes) -> None:
        """Hand ``key`` to the oldest waiting claim, or free it."""
        waiters = self._held[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        del self._held[key]

    @asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        await self.claim(key)
        try:
            yield
        finally:
            self.release(key)

    @asynccontextmanager
    async def hold_many(self, keys: list[bytes]) -> AsyncIterator[None]:
        """Hold several keys at once; claimed in sorted order, so two holders of overlapping sets never deadlock."""
        held: list[bytes] = []
        try:
            for key in sorted(set(keys)):
                await self.claim(key)
                held.append(key)
            yield
        finally:
            for key in held:
                self.release(key)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __len__(self) -> int:
        return len(self._held)
