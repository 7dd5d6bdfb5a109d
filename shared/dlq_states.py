"""The life of a dead-letter entry: its states, the events that move it, and the one function that decides.

Both writers of ``dlq_entries`` use it: the API (a replay request) and the DLQ service (a run dead-lettered, a
replay that succeeded). Each writes a change as a conditional ``UPDATE ... WHERE status IN (sources)``, so two
writers racing on one entry cannot make a transition this table does not allow.

    (none) ──dead-lettered──► dead ──replay requested──► replaying ──replay succeeded──► resolved
                               ▲                              │
                               └────────dead-lettered─────────┘   (the replay ran out of attempts too)
"""

from __future__ import annotations

from enum import StrEnum


class DlqStatus(StrEnum):
    DEAD = "dead"
    REPLAYING = "replaying"
    RESOLVED = "resolved"


class DlqEvent(StrEnum):
    DEAD_LETTERED = "dead-lettered"
    REPLAY_REQUESTED = "replay requested"
    REPLAY_SUCCEEDED = "replay succeeded"


class InvalidDlqTransition(ValueError):
    """The event does not apply to an entry in this state."""

    def __init__(self, current: DlqStatus | None, event: DlqEvent) -> None:
        where = f"an entry that is {current.value}" if current is not None else "a missing entry"
        super().__init__(f"{event.value} does not apply to {where}")
        self.current = current
        self.event = event


# (state before, event) → state after. ``None`` is an entry not stored yet.
_TRANSITIONS: dict[tuple[DlqStatus | None, DlqEvent], DlqStatus] = {
    (None, DlqEvent.DEAD_LETTERED): DlqStatus.DEAD,
    # The same dead letter read again (a redelivery) leaves the entry dead.
    (DlqStatus.DEAD, DlqEvent.DEAD_LETTERED): DlqStatus.DEAD,
    (DlqStatus.REPLAYING, DlqEvent.DEAD_LETTERED): DlqStatus.DEAD,
    (DlqStatus.DEAD, DlqEvent.REPLAY_REQUESTED): DlqStatus.REPLAYING,
    (DlqStatus.REPLAYING, DlqEvent.REPLAY_SUCCEEDED): DlqStatus.RESOLVED,
}

# A replay under way must finish (or fail) before its entry may go: retention pruning skips these.
IN_FLIGHT: frozenset[DlqStatus] = frozenset({DlqStatus.REPLAYING})


def next_status(current: DlqStatus | None, event: DlqEvent) -> DlqStatus:
    """The state after ``event``, or :class:`InvalidDlqTransition` when it does not apply."""
    try:
        return _TRANSITIONS[(current, event)]
    except KeyError:
        raise InvalidDlqTransition(current, event) from None


def sources(event: DlqEvent) -> frozenset[DlqStatus]:
    """The stored states ``event`` applies to: the ``WHERE status IN (...)`` of its update."""
    return frozenset(state for state, e in _TRANSITIONS if e is event and state is not None)


def target(event: DlqEvent) -> DlqStatus:
    """The state ``event`` leads to (one per event in this table)."""
    (after,) = {after for (_, e), after in _TRANSITIONS.items() if e is event}
    return after
