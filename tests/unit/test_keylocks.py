"""The planner's per-key locks: one holder per key at a time, keys independent, nothing left behind."""

from __future__ import annotations

import asyncio

from services.planner.keylocks import KeyLocks


async def test_one_holder_per_key_and_keys_do_not_wait_for_each_other() -> None:
    locks = KeyLocks()
    inside: dict[bytes, int] = {b"a": 0, b"b": 0}
    most: dict[bytes, int] = {b"a": 0, b"b": 0}
    order: list[str] = []

    async def work(key: bytes, name: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            most[key] = max(most[key], inside[key])
            await asyncio.sleep(0.01)
            order.append(name)
            inside[key] -= 1

    await asyncio.gather(work(b"a", "a1"), work(b"a", "a2"), work(b"b", "b1"), work(b"a", "a3"))
    assert most == {b"a": 1, b"b": 1}
    assert [n for n in order if n.startswith("a")] == ["a1", "a2", "a3"], "waiters run in arrival order"
    assert order.index("b1") < order.index("a2"), "another key did not wait behind key a"
    assert len(locks) == 0


async def test_a_failing_holder_releases_the_key() -> None:
    locks = KeyLocks()

    async def fail() -> None:
        async with locks.hold(b"k"):
            raise RuntimeError("boom")

    results = await asyncio.gather(fail(), fail(), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(locks) == 0
    async with locks.hold(b"k"):
        assert len(locks) == 1


async def test_try_claim_never_waits_and_a_held_key_is_refused() -> None:
    locks = KeyLocks()
    assert locks.try_claim(b"k")
    assert not locks.try_claim(b"k")
    waiter = asyncio.create_task(locks.claim(b"k"))
    await asyncio.sleep(0)
    assert not waiter.done(), "an agent waits while the fire loop holds the key"
    locks.release(b"k")
    await asyncio.wait_for(waiter, 1)
    assert not locks.try_claim(b"k"), "the claim was handed to the waiting agent"
    locks.release(b"k")
    assert len(locks) == 0 and locks.try_claim(b"k")


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    locks = KeyLocks()
    assert locks.try_claim(b"k")
    first = asyncio.create_task(locks.claim(b"k"))
    second = asyncio.create_task(locks.claim(b"k"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    locks.release(b"k")
    await asyncio.wait_for(second, 1)
    locks.release(b"k")
    assert len(locks) == 0
