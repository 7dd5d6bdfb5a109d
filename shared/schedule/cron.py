"""Cron evaluation with Debian cron semantics around DST, delegated to cronsim.

cronsim mirrors Debian cron: a fixed-time job whose time falls in a skipped hour runs right after the jump,
it runs once (not twice) in a repeated hour, and wildcard-hour jobs such as ``0 * * * *`` fire in both
passes of a repeated hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from shared.errors import InvalidSchedule

# A valid expression fires at least once in any eight years (29 February needs a leap year, and a
# weekday-restricted leap day can need longer, so allow a generous margin).
_NEVER_FIRES_HORIZON = timedelta(days=366 * 30)


def _parse(expr: str, start_local: datetime) -> CronSim:
    fields = expr.split()
    if len(fields) != 5:
        raise InvalidSchedule("cron_expr", "a cron expression has exactly 5 fields: minute hour day month weekday")
    try:
        return CronSim(expr, start_local)
    except CronSimError as exc:
        raise InvalidSchedule("cron_expr", f"invalid cron expression {expr!r}: {exc}") from exc


def cron_fires_after(expr: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    """Fire instants (UTC) strictly after ``after``, in order."""
    local = after.astimezone(zone)
    for fire in _parse(expr, local):
        yield fire.astimezone(UTC)


def validate_cron(expr: str, zone: ZoneInfo, now: datetime) -> None:
    """Refuse expressions that are malformed or can never fire."""
    it = cron_fires_after(expr, zone, now)
    try:
        first = next(it)
    except (StopIteration, CronSimError) as exc:
        raise InvalidSchedule("cron_expr", f"cron expression {expr!r} never fires") from exc
    if first - now > _NEVER_FIRES_HORIZON:
        raise InvalidSchedule("cron_expr", f"cron expression {expr!r} never fires")
