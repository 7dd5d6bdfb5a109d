"""One lock per schedule key, held only while something is working on that key.

The planner's agents read a schedule's entry, await the broker, then write the entry back. The ticks agent runs
many instances at once, and the schedules, results and commands agents run beside it, so two of them may hold
the same key across an await: a tick that was still in the topic when the planner restarted and the fresh tick
for the same fire would both publish it. Holding the key's lock across that read-await-write makes each one
see the other's write.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyLocks:
    def __init__(self) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
