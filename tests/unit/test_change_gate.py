"""The planner's change gate: fires wait until the changes already in the topic have been applied."""

from __future__ import annotations

import asyncio

from services.planner.changegate import ChangeGate


class Offsets:
    """(committed, high watermark) per partition, as the broker would answer; ``away`` makes it fail."""

    def __init__(self) -> None:
        self.values: dict[int, tuple[int | None, int | None]] = {}
        self.away = False

    async def __call__(self, partitions: list[int]) -> dict[int, tuple[int | None, int | None]]:
        if self.away:
            raise ConnectionError("broker away")
        return {p: self.values.get(p, (None, None)) for p in partitions}


def gate(offsets: Offsets, settle_s: float = 0.0, max_hold_s: float = 60.0) -> ChangeGate:
    return ChangeGate(offsets, settle_s=settle_s, max_hold_s=max_hold_s)


async def test_opens_once_applied_changes_reach_the_high_watermark() -> None:
    offsets = Offsets()
    offsets.values = {0: (10, 12), 1: (5, 5)}
    g = gate(offsets)
    assert not g.is_open
    assert not await g.check([0, 1]), "partition 0 has two changes not applied yet"
    g.applied(0, 10)
    assert not await g.check([0, 1])
    g.applied(0, 11)
    assert await g.check([0, 1])
    assert g.is_open and g.reason == ""


async def test_an_unknown_high_watermark_or_an_absent_broker_keeps_it_closed() -> None:
    offsets = Offsets()
    g = gate(offsets)
    assert not await g.check([0]), "no fetch has reported the high watermark yet"
    offsets.values = {0: (3, 3)}
    offsets.away = True
    assert not await g.check([0])
    offsets.away = False
    assert await g.check([0])


async def test_after_an_outage_it_waits_for_the_relay_once_the_broker_answers() -> None:
    offsets = Offsets()
    offsets.values = {0: (4, 4)}
    g = gate(offsets, settle_s=0.2)
    assert await g.check([0])
    g.close("publishing failed", settle=True)
    offsets.away = True
    assert not await g.check([0])
    offsets.away = False
    assert not await g.check([0]), "caught up, but the settle period starts when the broker answers"
    await asyncio.sleep(0.25)
    assert await g.check([0])


async def test_it_never_holds_fires_past_its_limit() -> None:
    offsets = Offsets()
    offsets.values = {0: (0, 100)}
    g = gate(offsets, max_hold_s=0.1)
    assert not await g.check([0])
    await asyncio.sleep(0.15)
    assert await g.check([0]), "opened with a warning although still behind"


async def test_a_revoked_partition_no_longer_counts_its_applied_offsets() -> None:
    offsets = Offsets()
    offsets.values = {0: (0, 3)}
    g = gate(offsets)
    g.applied(0, 2)
    assert await g.check([0])
    g.forget([0])
    g.close("recovering")
    assert not await g.check([0]), "after it comes back, only the committed offset counts"


async def test_changes_that_keep_arriving_do_not_hold_fires_back() -> None:
    offsets = Offsets()
    offsets.values = {0: (0, 10)}
    g = gate(offsets)
    assert not await g.check([0])
    offsets.values = {0: (0, 20)}  # creates keep coming at a steady rate
    g.applied(0, 9)
    assert await g.check([0]), "caught up with what was there when the gate closed"


def test_offsets_passed_over_between_applied_changes_are_counted() -> None:
    g = gate(Offsets())
    assert g.applied(0, 5) == 0, "the first change since the partition was taken has nothing before it to check"
    assert g.applied(0, 6) == 0
    assert g.applied(0, 9) == 2, "offsets 7 and 8 were never applied"
    assert g.applied(0, 7) == 0, "a change read again after a seek back is no gap"
    assert g.applied(0, 10) == 0
    assert g.applied(1, 40) == 0, "partitions are counted apart"
    g.forget([0])
    assert g.applied(0, 30) == 0, "a partition taken again starts afresh"
