"""CPU priority of the processes a local stack starts on one host.

Only the executor's timing is visible to a receiver: the planner publishes ``run.due`` seconds ahead of the
nominal time (look-ahead dispatch), and the broker, the recorder, the DLQ service and the API do work that no
webhook waits for. When they all share a laptop's cores, a burst of theirs used to hold the executor off a core
for 10-30 ms, which is most of its lag above 5 ms; lowering their priority lets the executor preempt them and
costs them nothing on average (they are not starved, they yield). On Kubernetes each service has its own CPU
request instead, and none of this applies (docs/decisions.md, "The delivery path has the CPU first").
"""

from __future__ import annotations

import os
from collections.abc import Callable

# A niceness, not a hard share: under contention a nice-10 process gets about a tenth of a nice-0 one's time
# slice, and all of a core nobody else wants.
BACKGROUND_NICENESS = 10
# The delivery path keeps the priority it was started with.
FOREGROUND = frozenset({"executor", "api"})


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
