"""Retry decisions: when the next attempt may run, or why the run is dead. Pure: no clock, no I/O."""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.events.schedule import BackoffKind, RetryPolicy


@dataclass(frozen=True, slots=True)
class Retry:
    not_before: datetime
    delay_seconds: float


@dataclass(frozen=True, slots=True)
class Dead:
    reason: str
    # A bounded name for metrics: attempts_exhausted, too_old or permanent.
    cause: str = "permanent"


def base_delay(policy: RetryPolicy, failed_attempt: int) -> float:
    """Delay after the ``failed_attempt``-th attempt (1-based), before jitter, capped by ``max_delay_seconds``."""
    n = max(1, failed_attempt)
    match policy.backoff:
        case BackoffKind.EXPONENTIAL:
            # Cap the exponent first: multiplier ** n overflows floats long before any real retry budget.
            exponent = min(n - 1, 1024)
            try:
                delay = policy.initial_delay_seconds * policy.multiplier**exponent
            except OverflowError:
                delay = policy.max_delay_seconds
        case BackoffKind.LINEAR:
            delay = policy.initial_delay_seconds * n
        case BackoffKind.FIXED:
            delay = policy.initial_delay_seconds
    return float(min(delay, policy.max_delay_seconds))


def jittered(policy: RetryPolicy, failed_attempt: int, run_id: uuid.UUID) -> float:
    """Full jitter (uniform in [0, base]), seeded by (run, attempt) so a re-decision after a crash agrees."""
    base = base_delay(policy, failed_attempt)
    if not policy.jitter:
        return base
    seed = int.from_bytes(hashlib.sha256(f"{run_id}/{failed_attempt}".encode()).digest()[:8], "big")
    return random.Random(seed).uniform(0.0, base)  # noqa: S311 - spreading load, not security


def decide(
    policy: RetryPolicy,
    *,
    run_id: uuid.UUID,
    failed_attempt: int,
    attempts_used: int,
    failed_at: datetime,
    age_origin: datetime,
    retry_after_seconds: float | None = None,
) -> Retry | Dead:
    """The next attempt, or death when the attempt budget or ``max_event_age_seconds`` is spent.

    ``attempts_used`` counts attempts against this budget (a replay starts a fresh one while ``failed_attempt``
    keeps counting). ``Retry-After`` is honoured as a minimum, capped by ``max_delay_seconds``.
    """
    if attempts_used >= policy.max_attempts:
        return Dead(f"attempts exhausted ({attempts_used} of {policy.max_attempts})", "attempts_exhausted")
    delay = jittered(policy, attempts_used, run_id)
    if retry_after_seconds is not None:
        delay = min(max(delay, retry_after_seconds), policy.max_delay_seconds)
    not_before = failed_at + timedelta(seconds=delay)
    if not_before - age_origin > timedelta(seconds=policy.max_event_age_seconds):
        return Dead(f"max_event_age_seconds ({policy.max_event_age_seconds}) exceeded", "too_old")
    return Retry(not_before=not_before, delay_seconds=delay)


def tier_for(delay_seconds: float, tiers: tuple[tuple[str, int], ...]) -> str:
    """The smallest retry tier whose delay covers ``delay_seconds`` (the largest for anything longer)."""
    for name, seconds in tiers:
        if delay_seconds <= seconds:
            return name
    return tiers[-1][0]
