"""What must hold after a fault, checked from what the sink received. Pure: no clock, no I/O."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from bench.sink import Arrival

# A delete or pause takes effect within this long of its acknowledgement.
DELETE_GRACE = timedelta(seconds=1)
_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Verdict:
    scenario: str
    expected: int
    delivered: int
    lost: int
    duplicate_ids: int
    repeats: int
    after_delete: int
    deliveries: int
    # Fires not delivered but accounted for in the dead-letter queue (they ran out of attempts).
    dead_lettered: int = 0
    # Scenario-specific checks that failed (a record not quarantined, a service that died), in words.
    problems: tuple[str, ...] = ()
    # Scenario-specific measurements (how long partitions took to move, say), reported beside the counts.
    facts: tuple[tuple[str, float], ...] = ()
    # A few of the fires behind a failed count, to start looking from.
    examples: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.duplicate_ids == 0 and self.after_delete == 0 and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"passed": self.passed}


def judge(
    scenario: str,
    arrivals: list[Arrival],
    expected: dict[str, set[datetime]],
    deleted: dict[str, datetime],
    dead: frozenset[tuple[str, datetime]] = frozenset(),
) -> Verdict:
    """``expected``: the nominal times each schedule had to deliver; ``deleted``: when each delete (or pause) of a
    schedule was acknowledged.

    - lost: an expected (schedule, nominal time) that never reached the sink and is not in ``dead`` (the
      dead-letter queue);
    - duplicate ids: a (schedule, nominal time) delivered under more than one ``webhook-id``;
    - repeats: deliveries of a ``webhook-id`` already delivered (allowed, they come from crashes; counted);
    - after delete: a delivery whose nominal time is more than a second after its schedule's delete was
      acknowledged.
    """
    ids_by_fire: dict[tuple[str, datetime], set[str]] = {}
    per_id: Counter[str] = Counter()
    after_delete = 0
    examples: list[str] = []
    for a in arrivals:
        ids_by_fire.setdefault((a.schedule_id, a.nominal), set()).add(a.webhook_id)
        per_id[a.webhook_id] += 1
        acked = deleted.get(a.schedule_id)
        if acked is not None and a.nominal > acked + DELETE_GRACE:
            after_delete += 1
            if after_delete <= _EXAMPLES:
                examples.append(f"after delete/pause: {a.schedule_id} at {a.nominal.isoformat()}, acked {acked}")
    wanted = {(sid, nominal) for sid, nominals in expected.items() for nominal in nominals}
    reached = wanted & ids_by_fire.keys()
    dead_only = (wanted - reached) & dead
    lost = sorted(wanted - reached - dead_only)
    examples += [f"lost: {sid} at {nominal.isoformat()}" for sid, nominal in lost[:_EXAMPLES]]
    return Verdict(
        scenario=scenario,
        expected=len(wanted),
        delivered=len(reached),
        lost=len(lost),
        dead_lettered=len(dead_only),
        duplicate_ids=sum(1 for ids in ids_by_fire.values() if len(ids) > 1),
        repeats=sum(n - 1 for n in per_id.values()),
        after_delete=after_delete,
        deliveries=len(arrivals),
        examples=tuple(examples),
    )
