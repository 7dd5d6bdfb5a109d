"""Flow control: a receiver (a flow) gets at most its limit of calls at once, and per second.

A flow with a limit of its own (``PUT /api/flow-limits/{flow_key}``) has its runs routed to the one executor that
owns its partition of ``chime.runs.flow`` (``FlowLane``), so the limit holds across replicas. Every other flow is
held to ``CHIME_DEFAULT_FLOW_CONCURRENCY`` calls at once by each executor (``LocalFlows``).
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import Counter

from shared.compacted_view import CompactedView
from shared.consumer_runtime import QuarantineTopic
from shared.events import FlowLimitChanged
from shared.settings import Settings
from shared.topics import FLOW_LIMITS

T = TypeVar("T")
FlowId = tuple[str, str]
# Added to a rate window: calls leave on time, but reach the receiver a little early or late (the event loop on
# either side), so without it the receiver could count one call too many in some second.
RATE_WINDOW_GUARD_S = 0.05


def release_once(release: Callable[[], None]) -> Callable[[], None]:
    """``release`` made safe to call more than once: a flow's slot is handed back when the call ends, and again (to
    no effect) when the task that made it ends, whichever way it ends."""
    pending = True

    def once() -> None:
        nonlocal pending
        if pending:
            pending = False
            release()

    return once


@dataclass(frozen=True, slots=True)
class FlowLimit:
    max_concurrency: int
    max_per_second: float | None = None

    @property
    def rate_window(self) -> tuple[int, float] | None:
        """(n, seconds): at most n calls start in any window of that many seconds; None when there is no rate."""
        if self.max_per_second is None:
            return None
        n = max(1, math.floor(self.max_per_second))
        return n, n / self.max_per_second + RATE_WINDOW_GUARD_S


class FlowLimits(CompactedView[FlowLimitChanged]):
    """Every tenant's flow limits from ``chime.flow-limits`` (no group: any executor may meet any flow)."""

    def __init__(self, settings: Settings, quarantine: QuarantineTopic | None = None) -> None:
        super().__init__(settings, FLOW_LIMITS, FlowLimitChanged, quarantine)
        # A deleted limit keeps its version (as None), so an older record read later cannot bring it back.
        self._limits: dict[FlowId, tuple[int, FlowLimit | None]] = {}
        self._count = 0

    def __bool__(self) -> bool:
        return self._count > 0

    def get(self, tenant: str, flow: str) -> FlowLimit | None:
        entry = self._limits.get((tenant, flow))
        return None if entry is None else entry[1]

    def _take(self, event: FlowLimitChanged) -> str | None:
        data = event.data
        flow = (data.tenant_id, data.flow_key)
        held = self._limits.get(flow)
        if held is not None and held[0] >= data.version:
            return None
        limit = None if data.deleted else FlowLimit(data.max_concurrency, data.max_per_second)
        self._count += (limit is not None) - (held is not None and held[1] is not None)
        self._limits[flow] = (data.version, limit)
        return None


class FlowGate(Generic[T]):
    """One flow's waiting runs and its calls, in one executor: bookkeeping only, the caller does the I/O.

    Runs wait in nominal-time order; the head starts once the flow has a free slot and its rate window allows.
    """

    __slots__ = ("_seq", "_starts", "in_flight", "waiting")

    def __init__(self) -> None:
        self.waiting: list[tuple[float, int, int, T]] = []
        self.in_flight = 0
        # One cell per start, so the call can move its time to the moment it really began (``Start.began``).
        self._starts: deque[list[float]] = deque()
        self._seq = 0

    def push(self, nominal: float, attempt: int, item: T) -> None:
        self._seq += 1
        heapq.heappush(self.waiting, (nominal, attempt, self._seq, item))

    def blocked(self, limit: FlowLimit, now: float) -> str | None:
        """What holds the head back now (``concurrency`` or ``rate``), or None when it may start."""
        if self.in_flight >= limit.max_concurrency:
            return "concurrency"
        if self.rate_wait(limit, now) > 0:
            return "rate"
        return None

    def rate_wait(self, limit: FlowLimit, now: float) -> float:
        """Seconds until the rate window allows another start (0 when it does now)."""
        window = limit.rate_window
        if window is None:
            self._starts.clear()
            return 0.0
        n, seconds = window
        starts = self._starts
        while starts and starts[0][0] <= now - seconds:
            starts.popleft()
        if len(starts) < n:
            return 0.0
        return max(0.0, starts[-n][0] + seconds - now)

    def seed(self, limit: FlowLimit, at: float) -> None:
        """Count a full window of starts at ``at``: what the flow's previous owner may have started just before it
        handed the flow over (its history does not travel with the partition)."""
        window = limit.rate_window
        if window is not None:
            self._starts.extend([at] for _ in range(window[0]))

    def take(self, limit: FlowLimit, now: float) -> tuple[T, list[float]]:
        """Start the head (the caller checked ``blocked`` first): the item, and the cell holding its start time,
        which the call sets again when it really begins."""
        _, _, _, item = heapq.heappop(self.waiting)
        self.in_flight += 1
        cell = [now]
        if limit.max_per_second is not None:
            self._starts.append(cell)
        return item, cell

    def finished(self) -> None:
        self.in_flight -= 1

    def remove(self, withdrawn: Callable[[T], bool]) -> list[T]:
        """Take out the waiting runs ``withdrawn`` picks (a cancel or a pause reached them before their turn)."""
        kept = [entry for entry in self.waiting if not withdrawn(entry[3])]
        if len(kept) == len(self.waiting):
            return []
        gone = [entry[3] for entry in self.waiting if withdrawn(entry[3])]
        heapq.heapify(kept)
        self.waiting = kept
        return gone

    def idle(self, limit: FlowLimit, now: float) -> bool:
        """Nothing waiting, nothing in flight, and no start the rate window still counts: safe to forget."""
        if self.waiting or self.in_flight:
            return False
        self.rate_wait(limit, now)  # drops the starts the window no longer counts
        return not self._starts


class LocalFlows:
    """The default limit, per executor: at most ``limit`` calls at once to a flow without a limit of its own.

    A call over the limit waits its turn (first come, first served) for a slot another call hands over.
    """

    def __init__(self, limit: int, throttled: Counter) -> None:
        self._limit = limit
        self._throttled = throttled.labels("concurrency")
        self._in_flight: dict[FlowId, int] = {}
        self._waiters: dict[FlowId, deque[asyncio.Future[None]]] = {}

    async def acquire(self, flow: FlowId) -> None:
        held = self._in_flight.get(flow, 0)
        if held < self._limit and flow not in self._waiters:
            self._in_flight[flow] = held + 1
            return
        self._throttled.inc()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(flow, deque()).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(flow)  # handed a slot just as it was cancelled: pass it on
            else:
                queue = self._waiters.get(flow)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)
                    if not queue:
                        del self._waiters[flow]
            raise

    def release(self, flow: FlowId) -> None:
        queue = self._waiters.get(flow)
        while queue:
            waiter = queue.popleft()
            if not queue:
                del self._waiters[flow]
            if not waiter.done():
                waiter.set_result(None)  # the slot passes to the next caller
                return
        held = self._in_flight.get(flow, 0) - 1
        if held > 0:
            self._in_flight[flow] = held
        else:
            self._in_flight.pop(flow, None)


class RoutedRuns:
    """Which flow each recently routed run and schedule went to, so a cancel or a stop that comes after the run
    left for ``chime.runs.flow`` can follow it there. Forgotten after ``memory_s``."""

    def __init__(self, memory_s: float) -> None:
        self._memory_s = memory_s
        self._runs: dict[uuid.UUID, bytes] = {}
        # Per schedule: how many of its routed runs are remembered, and the flows they went to.
        self._schedules: dict[uuid.UUID, tuple[int, set[bytes]]] = {}
        self._order: deque[tuple[float, uuid.UUID, uuid.UUID]] = deque()

    def __bool__(self) -> bool:
        return bool(self._order)

    def add(self, run_id: uuid.UUID, schedule_id: uuid.UUID, flow_key: bytes) -> None:
        self._runs[run_id] = flow_key
        count, flows = self._schedules.get(schedule_id, (0, set()))
        flows.add(flow_key)
        self._schedules[schedule_id] = (count + 1, flows)
        self._order.append((time.monotonic() + self._memory_s, run_id, schedule_id))

    def flow_of_run(self, run_id: uuid.UUID) -> bytes | None:
        return self._runs.get(run_id)

    def flows_of_schedule(self, schedule_id: uuid.UUID) -> set[bytes]:
        entry = self._schedules.get(schedule_id)
        return set() if entry is None else entry[1]

    def prune(self) -> None:
        now = time.monotonic()
        order = self._order
        while order and order[0][0] <= now:
            _, run_id, schedule_id = order.popleft()
            self._runs.pop(run_id, None)
            count, flows = self._schedules.get(schedule_id, (1, set()))
            if count <= 1:
                self._schedules.pop(schedule_id, None)
            else:
                self._schedules[schedule_id] = (count - 1, flows)
