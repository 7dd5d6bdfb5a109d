"""The dead-letter entry's state machine: the transitions the API and the DLQ service share."""

from __future__ import annotations

import pytest

from shared.dlq_states import (
    IN_FLIGHT,
    DlqEvent,
    DlqStatus,
    InvalidDlqTransition,
    next_status,
    sources,
    target,
)


def test_a_run_dead_lettered_is_dead_and_a_replay_resolves_it() -> None:
    state = next_status(None, DlqEvent.DEAD_LETTERED)
    assert state is DlqStatus.DEAD
    state = next_status(state, DlqEvent.REPLAY_REQUESTED)
    assert state is DlqStatus.REPLAYING
    assert next_status(state, DlqEvent.REPLAY_SUCCEEDED) is DlqStatus.RESOLVED


def test_a_failed_replay_makes_the_entry_dead_again() -> None:
    assert next_status(DlqStatus.REPLAYING, DlqEvent.DEAD_LETTERED) is DlqStatus.DEAD


@pytest.mark.parametrize(
    ("current", "event"),
    [
        (DlqStatus.REPLAYING, DlqEvent.REPLAY_REQUESTED),  # a second replay while one is in flight
        (DlqStatus.RESOLVED, DlqEvent.REPLAY_REQUESTED),
        (DlqStatus.DEAD, DlqEvent.REPLAY_SUCCEEDED),  # only a requested replay resolves
        (DlqStatus.RESOLVED, DlqEvent.DEAD_LETTERED),  # a redelivered dead letter cannot undo a success
        (None, DlqEvent.REPLAY_REQUESTED),
    ],
)
def test_transitions_outside_the_table_are_refused(current: DlqStatus | None, event: DlqEvent) -> None:
    with pytest.raises(InvalidDlqTransition) as raised:
        next_status(current, event)
    assert event.value in str(raised.value)


def test_sources_and_targets_agree_with_next_status() -> None:
    for event in DlqEvent:
        for state in DlqStatus:
            if state in sources(event):
                assert next_status(state, event) is target(event)
            else:
                with pytest.raises(InvalidDlqTransition):
                    next_status(state, event)
    assert IN_FLIGHT == sources(DlqEvent.REPLAY_SUCCEEDED)
