"""A component of the API whose work is one long-running task: started on entering, stopped on leaving."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


class BackgroundTask:
    """Subclasses give ``_run`` (a loop that runs until cancelled) and a ``name``; :meth:`stop` is idempotent."""

    name = "background"

    def __init__(self) -> None:
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=self.name)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        raise NotImplementedError
