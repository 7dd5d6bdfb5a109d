"""Fetch pacing: a consumer's fetch settings follow its traffic.

aiokafka keeps one fetch in flight per broker, and the broker holds a fetch until it has the minimum asked for or
the wait runs out. A consumer that always waits 50 ms asks twenty times a second even when nothing comes: the
executor's and the planner's empty fetches were most of what an idle stack cost (broker included), 0.2 ms of CPU
per fire at 1,000 fires/s.

With pacing, a fetch that found records is followed by a *busy* one (the consumer's own wait and minimum, which
batch a busy topic), and a fetch that found nothing by a *quiet* one: it asks for a single byte and waits long. The
broker answers a quiet fetch as soon as a record lands on any partition it covers, so a quiet consumer reads a
record at once (sooner than a busy fetch with a large minimum would), and otherwise asks twice a second.

What the long wait can hold up: a partition left out of the quiet fetch, because it was paused or moved (a seek)
when the fetch was sent, is read once that fetch is back, up to ``QUIET_FETCH_WAIT_MS`` later. The executor pauses a
retry partition until a second before its next record is due, so that record is still read in time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer

QUIET_FETCH_WAIT_MS = 500


@dataclass(frozen=True, slots=True)
class FetchPace:
    busy_wait_ms: int
    busy_min_bytes: int
    quiet_wait_ms: int = QUIET_FETCH_WAIT_MS


def pace_fetches(consumer: AIOKafkaConsumer, pace: FetchPace) -> None:
    """Pace a started consumer's fetches (its first fetch keeps the settings it was built with).

    aiokafka has no setting for this: the fetcher reads its wait and minimum when it builds each request, so they are
    set on it after each response. ``constraints.txt`` pins the aiokafka these private names are read from, and
    ``tests/integration/test_fetch_pacing.py`` checks them against it.
    """
    fetcher: Any = consumer._fetcher
    if fetcher is None:
        raise RuntimeError("pace_fetches needs a started consumer")
    fetch: Callable[[Any, int, Any], Awaitable[bool]] = fetcher._proc_fetch_request

    async def paced(assignment: Any, node_id: int, request: Any) -> bool:
        found = await fetch(assignment, node_id, request)
        if found:
            fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes = pace.busy_wait_ms, pace.busy_min_bytes
        else:
            fetcher._fetch_max_wait_ms, fetcher._fetch_min_bytes = pace.quiet_wait_ms, 1
        return found

    fetcher._proc_fetch_request = paced
