"""The event loop every Chime service runs on.

uvloop rather than asyncio's default loop: the services are I/O loops that spend much of their CPU in the
loop itself (timers, socket reads, callbacks), and uvloop does that work in C. At 700 fires/s it cut the
stack's CPU per fire noticeably (docs/decisions.md, "uvloop").
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvloop

T = TypeVar("T")


class LoopBinding:
    """The running loop, looked up on the first call and remembered: on Python 3.11 every
    ``asyncio.get_running_loop()`` makes a ``getpid`` system call (a check for forks), and the executor's hot paths
    made several per run, 7% of its CPU. Bind it in the object that runs on the loop, call it where the loop is
    needed."""

    __slots__ = ("_loop",)

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def __call__(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop


def install() -> None:
    """Make every loop this process creates from now on (threads included) a uvloop loop."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(main: Coroutine[Any, Any, T]) -> T:
    install()
    return asyncio.run(main)
