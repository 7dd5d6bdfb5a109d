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


def install() -> None:
    """Make every loop this process creates from now on (threads included) a uvloop loop."""
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def run(main: Coroutine[Any, Any, T]) -> T:
    install()
    return asyncio.run(main)
