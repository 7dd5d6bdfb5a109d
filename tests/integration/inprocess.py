"""The planner and the executor built in the test's own process, against the real broker and database.

The end-to-end tests start every service as a process, which takes seconds per service and hides the state a test
would like to look at. Here a test runs the planner (its Faust app, started on the test's loop) and executors
(``Executor.run`` as tasks) next to the in-process API, on topics of their own, calling a recording sink on
loopback, and waits until what it expects has happened; it can look at their state as well as at the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable

from services.executor.worker import Executor
from services.planner.app import Planner
from shared.settings import Settings


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Look at ``check`` every 20 ms until it holds (a look at a service's state); fail with ``what`` after
    ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        if check():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running_planner(settings: Settings, name: str = "planner-1") -> AsyncIterator[Planner]:
    """A planner on the test's loop, with a data directory and a group member id (``name``) of its own, ready once
    it holds its partitions."""
    with tempfile.TemporaryDirectory(prefix="chime-planner-") as datadir:
        planner = Planner(settings.model_copy(update={"planner_data_dir": datadir, "instance_id": name}))
        await planner.app.start()
        try:
            await wait_until(planner.holds_partitions, 60, "the planner holds its partitions")
            yield planner
        finally:
            await planner.stop_firing()
            await planner.app.stop()


@contextlib.asynccontextmanager
async def running_executor(settings: Settings, name: str = "executor-1") -> AsyncIterator[Executor]:
    """An executor on the test's loop, ready once it consumes."""
    executor = Executor(settings, f"{name}-{uuid.uuid4().hex[:6]}")
    task = asyncio.create_task(executor.run())
    try:
        await wait_until(lambda: executor.consuming or task.done(), 60, "the executor consumes")
        if task.done():
            task.result()
        yield executor
    finally:
        executor.stop()
        await asyncio.wait_for(task, 30)
