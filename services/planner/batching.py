"""Batches of events from a Faust stream, with no timer running while nothing arrives.

Faust's ``Stream.take_events(max_, within)`` waits ``within`` at a time in a loop whether anything arrived or not.
The planner batches schedule changes within 5 ms, so an idle planner woke 200 times a second, each time through
mode's ``Service.wait`` (a task and futures per wait): with strace, 640 loop iterations a second and most of an idle
planner's CPU (3.3% of a core). ``take_batches`` waits for the first event of a batch without a timeout, and only
then up to ``within`` for the rest of it. Otherwise it does what ``take_events`` does: a processor fills the
buffer, the stream is drained passively, and a batch's events are acknowledged once the consumer has handled it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from faust.types import EventT, StreamT


def take_batches(stream: StreamT[Any], max_: int, within: float) -> AsyncGenerator[list[EventT[Any]], None]:
    """Up to ``max_`` events at a time: a batch closes when it is full or ``within`` seconds after its first event."""
    batches = _take_batches(stream, max_, within)
    # As Faust does for its own buffering generators: the stream closes it when it stops, on any interpreter.
    stream._active_agens.add(batches)  # type: ignore[attr-defined]  # noqa: SLF001 - Faust's own registry
    return batches


async def _take_batches(stream: Any, max_: int, within: float) -> AsyncGenerator[list[EventT[Any]], None]:
    events: list[EventT[Any]] = []
    started = asyncio.Event()
    full = asyncio.Event()
    consumed = asyncio.Event()
    # Set while a batch is with the consumer: the processor waits on it, so no event joins a batch being handled.
    handling: asyncio.Future[None] | None = None

    async def add(value: Any) -> Any:
        nonlocal handling
        if handling is not None:
            try:
                await handling
            finally:
                handling = None
        event = stream.current_event
        if event is None:
            raise RuntimeError("a stream processor ran without a current event")
        events.append(event)
        started.set()
        if len(events) >= max_:
            full.set()
            consumed.clear()
            # A full batch holds the next event back until the consumer took it: a batch never exceeds max_.
            await stream.wait(consumed)
        return value

    acks = stream.enable_acks
    # Events are acknowledged here, after their batch was handled, not by the stream as they pass.
    stream.enable_acks = False
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))  # noqa: SLF001 - as take_events starts its drainer
    try:
        while not stream.should_stop:
            if not events and await stream.wait_for_stopped(started):
                break
            if not full.is_set():
                await stream.wait_for_stopped(full, timeout=within)
            if not events:
                continue
            handling = asyncio.get_running_loop().create_future()
            try:
                yield list(events)
            finally:
                for event in events:
                    await stream.ack(event)
                events.clear()
                started.clear()
                if not handling.done():
                    handling.set_result(None)
                full.clear()
                consumed.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add)  # noqa: SLF001 - the processor added above
