"""The planner's consumer through a rebalance: it acknowledges only records its agents took outside one, in the current
generation, and its read offsets do not move until it has sought back to the committed offsets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from faust.types import TP, Message

from services.planner.transport import PlannerApp, _ReadOffsets

_TOPIC = "changes"
_TP = TP(_TOPIC, 0)
_GENERATION = 3


@pytest.fixture
async def app() -> AsyncIterator[PlannerApp]:
    """An app that is never started (no broker is reached); its consumer acknowledges records of ``_TOPIC``."""
    planner = PlannerApp("acks", broker="kafka://127.0.0.1:9", web_enabled=False)
    conductor: Any = planner.topics
    conductor.add(planner.topic(_TOPIC))
    await conductor._update_indices()
    planner.consumer_generation_id = _GENERATION
    planner.flow_control.resume()
    yield planner
    # The consumer's thread made an event loop of its own when it was built; it never ran.
    consumer: Any = planner.consumer
    consumer._thread.thread_loop.close()


def _taken(app: PlannerApp, offset: int, generation: int = _GENERATION) -> Message:
    message = Message(_TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, None, tp=_TP, generation_id=generation)
    consumer: Any = app.consumer
    consumer._unacked_messages.add(message)
    return message


def _committable(app: PlannerApp) -> int | None:
    consumer: Any = app.consumer
    offset: int | None = consumer._new_offset(_TP)
    return offset


async def test_records_taken_in_the_current_generation_are_committed(app: PlannerApp) -> None:
    for offset in range(3):
        assert app.consumer.ack(_taken(app, offset))
    assert _committable(app) == 3


async def test_a_record_fetched_in_an_earlier_generation_is_not_committed(app: PlannerApp) -> None:
    stale = _taken(app, 0, generation=_GENERATION - 1)
    assert not app.consumer.ack(stale)
    consumer: Any = app.consumer
    # Nothing waits for it (a revocation waits until no record is unacknowledged), and nothing commits it.
    assert stale.acked and stale not in consumer._unacked_messages
    assert _committable(app) is None


async def test_records_skipped_while_flow_is_stopped_are_not_committed(app: PlannerApp) -> None:
    app.flow_control.suspend()
    for offset in range(4):
        assert not app.consumer.ack(_taken(app, offset))
    assert _committable(app) is None
    # Once flow resumes, the records read again from the committed offset are committed as they are applied.
    app.flow_control.resume()
    for offset in range(4):
        assert app.consumer.ack(_taken(app, offset))
    assert _committable(app) == 4


def test_read_offsets_are_held_from_a_revocation_until_the_seek_back() -> None:
    reads = _ReadOffsets()
    assert reads[_TP] is None
    reads[_TP] = 7
    assert reads[_TP] == 7
    # A record of the old generation finished after the revocation must not raise the bar for the records read again.
    reads.pop(_TP)
    reads.held = True
    reads[_TP] = 64
    assert reads[_TP] is None
    # The seek back sets them all at once, held or not.
    reads.update({_TP: 62})
    assert reads[_TP] == 62
    reads.held = False
    reads[_TP] = 63
    assert reads[_TP] == 63
