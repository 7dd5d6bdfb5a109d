"""A webhook receiver that misbehaves on purpose: errors, timeouts and reset connections, at set rates.

Only calls it answered 200 count as arrivals (what the invariants check); the rest are counted by kind.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass

from bench.sink import BenchSink

_ERROR = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"


@dataclass(frozen=True, slots=True)
class Faults:
    """Shares of calls answered 500, left unanswered past the caller's timeout, and reset."""

    error: float = 0.30
    timeout: float = 0.05
    reset: float = 0.05
    # Longer than the schedules' timeout_seconds, so the executor gives up first.
    hang_s: float = 2.5


class FaultySink(BenchSink):
    def __init__(self, faults: Faults, seed: int = 11) -> None:
        super().__init__()
        self.faults = faults
        self.rng = random.Random(seed)  # noqa: S311 - a repeatable run, not a secret
        self.answered: Counter[str] = Counter()

    def answer(self, transport: asyncio.Transport, keep_alive: bool, schedule: str, nominal: str, webhook: str) -> None:
        roll = self.rng.random()
        faults = self.faults
        if roll < faults.error:
            self.answered["500"] += 1
            transport.write(_ERROR)
        elif roll < faults.error + faults.timeout:
            self.answered["timeout"] += 1
            # Answer too late: the caller has given up and closed the connection by then.
            asyncio.get_running_loop().call_later(faults.hang_s, transport.close)
        elif roll < faults.error + faults.timeout + faults.reset:
            self.answered["reset"] += 1
            transport.abort()
        else:
            self.answered["200"] += 1
            super().answer(transport, keep_alive, schedule, nominal, webhook)
