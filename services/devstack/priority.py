"""CPU priority of the processes a local stack starts on one host.

Two paths are timed: the executor's calls (receivers see their lag) and a change's way from the API through the
planner (a delete must win within a second; run-now and pause within 100 ms). The broker, the recorder and the
DLQ service do work nobody waits on at that scale: the planner publishes ``run.due`` seconds ahead, and history
can trail by a second. When they all share a laptop's cores, bursts of the background ones held the executor off
a core for 10-30 ms, most of its lag above 5 ms; lowering their priority lets the timed processes preempt them and
costs them nothing on average (they are not starved, they yield). On Kubernetes each service has its own CPU
request instead, and none of this applies (docs/decisions.md, "The delivery path has the CPU first").
"""

from __future__ import annotations

import os
from collections.abc import Callable

# A niceness, not a hard share: under contention a nice-10 process gets about a tenth of a nice-0 one's time
# slice, and all of a core nobody else wants.
BACKGROUND_NICENESS = 10
# The timed paths keep the priority they were started with.
FOREGROUND = frozenset({"executor", "api", "planner"})


def niceness(service: str) -> int:
    """How much to lower ``service``'s CPU priority when it shares a host with the executor."""
    return 0 if service in FOREGROUND else BACKGROUND_NICENESS


def lower_priority(service: str) -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen`` that applies ``niceness(service)`` in the child, or ``None``."""
    amount = niceness(service)
    if amount == 0:
        return None

    def apply() -> None:
        os.nice(amount)

    return apply
