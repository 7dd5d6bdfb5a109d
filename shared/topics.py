"""The topic registry: every topic Chime uses, its shape, and idempotent creation."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared.settings import Settings

log = logging.getLogger(__name__)

# Retry tiers: a failed attempt waits in the smallest tier whose delay covers its backoff, so a tier's
# consumer only ever holds records for at most its own delay (see docs/decisions.md).
RETRY_TIERS: tuple[tuple[str, int], ...] = (("5s", 5), ("30s", 30), ("5m", 300), ("1h", 3600))


@dataclass(frozen=True, slots=True)
class TopicSpec:
    suffix: str
    compacted: bool = False


SCHEDULES = TopicSpec("schedules", compacted=True)
SIGNING_KEYS = TopicSpec("signing-keys", compacted=True)
FLOW_LIMITS = TopicSpec("flow-limits", compacted=True)
PLANNER_COMMANDS = TopicSpec("planner.commands")
DLQ_COMMANDS = TopicSpec("dlq.commands")
RUNS_DUE = TopicSpec("runs.due")
# Runs of flows with a limit, keyed by tenant and flow: one executor owns each flow and enforces its limit.
RUNS_FLOW = TopicSpec("runs.flow")
RUNS_RESULTS = TopicSpec("runs.results")
RUNS_DLQ = TopicSpec("runs.dlq")
RETRY_TOPICS = tuple(TopicSpec(f"runs.retry.{tier}") for tier, _ in RETRY_TIERS)
# Records a service could not handle, as they were, with their source and error in headers.
QUARANTINE = TopicSpec("quarantine")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    SCHEDULES,
    SIGNING_KEYS,
    FLOW_LIMITS,
    PLANNER_COMMANDS,
    DLQ_COMMANDS,
    RUNS_DUE,
    RUNS_FLOW,
    RUNS_RESULTS,
    RUNS_DLQ,
    *RETRY_TOPICS,
    QUARANTINE,
)


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    return f"{settings.topic_prefix}{spec.suffix}"


def topic_configs(spec: TopicSpec) -> dict[str, str]:
    if spec.compacted:
        # Keep tombstones long enough for a slow consumer to see a delete before compaction drops it.
        return {"cleanup.policy": "compact", "delete.retention.ms": str(7 * 86_400_000)}
    return {"cleanup.policy": "delete", "retention.ms": str(7 * 86_400_000)}


async def create_topics(settings: Settings) -> list[str]:
    """Create every missing topic; existing ones are left alone. Returns the names created now."""
    from aiokafka.admin import NewTopic

    from shared.kafka import admin_client

    async with admin_client(settings) as admin:
        existing = set(await admin.list_topics())
        missing = [spec for spec in ALL_TOPICS if topic_name(settings, spec) not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=topic_name(settings, spec),
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=topic_configs(spec),
            )
            for spec in missing
        ]
        response = await admin.create_topics(new)
        created: list[str] = []
        for name, code, *_ in getattr(response, "topic_errors", []):
            # 36 = TOPIC_ALREADY_EXISTS: another process won the race, which is fine.
            if code not in (0, 36):
                raise RuntimeError(f"creating topic {name} failed with Kafka error code {code}")
            if code == 0:
                created.append(name)
        log.info("created topics %s", created)
        return created


async def delete_topics(settings: Settings) -> list[str]:
    """Delete every topic under the installation's prefix, Faust's changelogs included.

    For throwaway installations (a test session, a benchmark): a broker keeps paying for every partition it
    holds, so topics left behind by thousands of such runs slow down everything else on it.
    """
    from shared.kafka import admin_client

    if not settings.topic_prefix:
        raise ValueError("refusing to delete topics without a topic prefix")
    async with admin_client(settings) as admin:
        doomed = [name for name in await admin.list_topics() if name.startswith(settings.topic_prefix)]
        if doomed:
            await admin.delete_topics(doomed)
    log.info("deleted %d topics under %s", len(doomed), settings.topic_prefix)
    return doomed
