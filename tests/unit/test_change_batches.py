"""The planner's change batches (``take_batches``): bounded, acknowledged after handling, and no timer while idle.

The stream below stands in for the part of a Faust stream ``take_batches`` uses (processors run by a passive
drainer with the event current, ``wait``/``wait_for_stopped``, ``ack``); the planner's integration and end-to-end
tests run the real one against the broker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from services.planner.batching import take_batches


@dataclass
class Event:
    value: int


class Channel:
    """What the stream reads: an async iterator over the events put in."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Event] = asyncio.Queue()

    def put_nowait(self, event: Event) -> None:
        self._queue.put_nowait(event)

    def __aiter__(self) -> Channel:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()


@dataclass
class Stream:
    channel: Channel = field(default_factory=Channel)
    enable_acks: bool = True
    should_stop: bool = False
    current_event: Event | None = None
    acked: list[int] = field(default_factory=list)
    timed_waits: int = 0
    _processors: list[Any] = field(default_factory=list)
    _active_agens: set[Any] = field(default_factory=set)
    _drainer: asyncio.Task[None] | None = None

    def add_processor(self, processor: Any) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel: Channel) -> None:
        self._drainer = asyncio.get_running_loop().create_task(self._drain(channel))

    async def _drain(self, channel: Channel) -> None:
        async for event in channel:
            self.current_event = event
            for processor in self._processors:
                await processor(event.value)

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.timed_waits += 1
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass
        return self.should_stop

    async def ack(self, event: Event) -> None:
        self.acked.append(event.value)


async def _collect(stream: Stream, max_: int, within: float, batches: list[list[int]], handled: list[int]) -> None:
    async for batch in take_batches(stream, max_, within):  # type: ignore[arg-type]
        assert stream.acked == handled, "a batch's events are acknowledged only after it was handled"
        values = [cast("int", e.value) for e in batch]
        batches.append(values)
        handled.extend(values)


def test_batches_are_bounded_and_acknowledged_after_handling() -> None:
    async def scenario() -> None:
        stream = Stream()
        batches: list[list[int]] = []
        handled: list[int] = []
        consumer = asyncio.create_task(_collect(stream, 3, 0.05, batches, handled))
        for n in range(7):
            stream.channel.put_nowait(Event(n))
        await asyncio.sleep(0.3)
        assert batches == [[0, 1, 2], [3, 4, 5], [6]]
        assert stream.acked == list(range(7))
        assert stream.enable_acks is False, "acknowledged by the batches while they run"
        consumer.cancel()

    asyncio.run(scenario())


def test_an_idle_stream_waits_without_a_timer_and_a_lone_event_goes_within_the_window() -> None:
    async def scenario() -> None:
        stream = Stream()
        batches: list[list[int]] = []
        consumer = asyncio.create_task(_collect(stream, 500, 0.005, batches, []))
        await asyncio.sleep(0.2)
        assert stream.timed_waits == 0, "nothing arrived: no wake-up every 5 ms"
        loop = asyncio.get_running_loop()
        sent = loop.time()
        stream.channel.put_nowait(Event(1))
        while not batches:
            await asyncio.sleep(0.001)
        assert batches == [[1]]
        assert loop.time() - sent < 0.1
        assert stream.timed_waits == 1, "one timed wait, for the lone event's company"
        consumer.cancel()

    asyncio.run(scenario())
