"""Generates docs/events/: a JSON Schema per event type and an AsyncAPI 3 document, from the models.

Run ``chime schema export`` after changing an event model; a test fails while the files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.events.catalog import EVENT_TYPES
from shared.topics import (
    DLQ_COMMANDS,
    FLOW_LIMITS,
    PLANNER_COMMANDS,
    QUARANTINE,
    RETRY_TIERS,
    RUNS_DLQ,
    RUNS_DUE,
    RUNS_FLOW,
    RUNS_RESULTS,
    SCHEDULES,
    SIGNING_KEYS,
    TopicSpec,
)

# Which topic carries which event types (the full registry is shared.topics).
TOPIC_OF: dict[str, TopicSpec] = {
    "dev.chime.schedule.upserted.v1": SCHEDULES,
    "dev.chime.schedule.deleted.v1": SCHEDULES,
    "dev.chime.signing_keys.updated.v1": SIGNING_KEYS,
    "dev.chime.flow_limit.changed.v1": FLOW_LIMITS,
    "dev.chime.run.due.v1": RUNS_DUE,
    "dev.chime.run.cancelled.v1": RUNS_DUE,
    "dev.chime.schedule.stopped.v1": RUNS_DUE,
    "dev.chime.run.succeeded.v1": RUNS_RESULTS,
    "dev.chime.run.attempt_failed.v1": RUNS_RESULTS,
    "dev.chime.command.run_now.v1": PLANNER_COMMANDS,
    "dev.chime.command.backfill.v1": PLANNER_COMMANDS,
    "dev.chime.command.run_finished.v1": PLANNER_COMMANDS,
    "dev.chime.run.dead_lettered.v1": RUNS_RESULTS,
    "dev.chime.run.skipped.v1": RUNS_RESULTS,
    "dev.chime.dlq.entry.v1": RUNS_DLQ,
    "dev.chime.command.replay.v1": DLQ_COMMANDS,
}


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


# Who sends and who receives each topic's records (the operations of the AsyncAPI document).
_SENDERS: dict[str, tuple[str, ...]] = {
    "schedules": ("api",),
    "signing-keys": ("api",),
    "flow-limits": ("api",),
    "runs.flow": ("executor",),
    "planner.commands": ("api", "executor"),
    "dlq.commands": ("api",),
    "runs.due": ("planner", "api", "dlq", "executor"),
    "runs.retry": ("executor",),
    "runs.results": ("planner", "executor", "dlq"),
    "runs.dlq": ("executor",),
    "quarantine": ("planner", "executor", "recorder", "dlq"),
}
_RECEIVERS: dict[str, tuple[str, ...]] = {
    "schedules": ("planner",),
    "signing-keys": ("executor",),
    "flow-limits": ("executor",),
    "runs.flow": ("executor",),
    "planner.commands": ("planner",),
    "dlq.commands": ("dlq",),
    "runs.due": ("executor", "recorder"),
    "runs.retry": ("executor",),
    "runs.results": ("recorder", "dlq", "consumers"),
    "runs.dlq": ("dlq",),
    "quarantine": ("operators",),
}
_DESCRIPTIONS = {
    "schedules": "Every schedule's latest state, keyed by its id (compacted: a delete is the last record of a key).",
    "signing-keys": "Each tenant's signing keys, encrypted, keyed by the tenant (compacted).",
    "flow-limits": "Each tenant's flow limits, keyed by the JSON array [tenant, flow key] (compacted).",
    "runs.flow": "Runs whose flow has a limit, due now, keyed by [tenant, flow key]: the executor that owns the"
    " flow's partition enforces its limit.",
    "planner.commands": "Run-now and backfill requests, and the end of runs that hold their schedule back.",
    "dlq.commands": "Replay requests for dead runs.",
    "runs.due": "Runs announced to executors ahead of their time, cancellations of announced runs, and the"
    " pauses and deletes that stop a schedule's announced runs.",
    "runs.retry": "Attempts waiting for their retry time; each tier holds delays up to its name.",
    "runs.results": "The outcome of every attempt, and fires that were skipped: the topic to consume.",
    "runs.dlq": "Runs that ran out of retries, with every attempt.",
    "quarantine": (
        "Records a service could not handle, copied unchanged with headers naming the service, source topic, "
        "partition, offset and error."
    ),
}
_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _camel(*words: str) -> str:
    parts = [p for w in words for p in w.replace("-", ".").replace("_", ".").split(".") if p]
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


def _channels() -> list[tuple[str, TopicSpec, str]]:
    """(channel name, topic, role key) in the order the document lists them."""
    found = [
        (_camel(spec.suffix), spec, spec.suffix) for spec in (SCHEDULES, SIGNING_KEYS, FLOW_LIMITS, PLANNER_COMMANDS)
    ]
    found += [(_camel(DLQ_COMMANDS.suffix), DLQ_COMMANDS, DLQ_COMMANDS.suffix)]
    found += [(_camel(spec.suffix), spec, spec.suffix) for spec in (RUNS_DUE, RUNS_FLOW)]
    found += [(_camel("runs.retry", tier), TopicSpec(f"runs.retry.{tier}"), "runs.retry") for tier, _ in RETRY_TIERS]
    found += [(_camel(spec.suffix), spec, spec.suffix) for spec in (RUNS_RESULTS, RUNS_DLQ, QUARANTINE)]
    return found


def render() -> dict[str, str]:
    """File name -> content for every generated file."""
    files: dict[str, str] = {}
    messages: dict[str, Any] = {}
    by_topic: dict[str, list[str]] = {}
    for model in EVENT_TYPES:
        event_type: str = model.model_fields["type"].default
        schema = {"$schema": _SCHEMA_DIALECT, **model.model_json_schema(mode="serialization")}
        schema["$id"] = f"https://chime.dev/events/{event_type}.json"
        files[f"{event_type}.json"] = _dump(schema)
        name = _camel(event_type.removeprefix("dev.chime."))
        messages[name] = {
            "name": event_type,
            "title": event_type,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"./{event_type}.json"},
            "headers": {
                "type": "object",
                "properties": {
                    "tenant": {"type": "string", "description": "The owning tenant id"},
                    "content-type": {"type": "string", "const": "application/cloudevents+json"},
                },
            },
            "bindings": {
                "kafka": {
                    "key": {
                        "type": "string",
                        "description": "The schedule id (the tenant id on signing-keys; the JSON array"
                        " [tenant, flow key] on flow-limits and runs.flow)",
                    },
                    "bindingVersion": "0.5.0",
                }
            },
        }
        topic = TOPIC_OF[event_type]
        retried = topic is RUNS_DUE and event_type == "dev.chime.run.due.v1"
        for key in ("runs.retry", "runs.flow") if retried else ():
            by_topic.setdefault(key, []).append(name)
        by_topic.setdefault(topic.suffix, []).append(name)
    messages["quarantinedRecord"] = {
        "name": "quarantined record",
        "title": "A record set aside, unchanged",
        "payload": {"description": "The original record's value, whatever it was"},
        "headers": {
            "type": "object",
            "properties": {
                f"chime-quarantine-{h}": {"type": "string"}
                for h in ("service", "topic", "partition", "offset", "error")
            },
        },
    }
    by_topic["quarantine"] = ["quarantinedRecord"]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for channel_name, spec, role in _channels():
        channels[channel_name] = {
            "address": f"chime.{spec.suffix}",
            "title": f"chime.{spec.suffix}",
            "description": _DESCRIPTIONS[role],
            "servers": [{"$ref": "#/servers/kafka"}],
            "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in by_topic[role]},
            "bindings": {
                "kafka": {
                    "topic": f"chime.{spec.suffix}",
                    "topicConfiguration": {"cleanup.policy": ["compact" if spec.compacted else "delete"]},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        refs = [{"$ref": f"#/channels/{channel_name}/messages/{m}"} for m in by_topic[role]]
        for action, parties in (("send", _SENDERS[role]), ("receive", _RECEIVERS[role])):
            for party in parties:
                operations[_camel(party, action, channel_name)] = {
                    "action": action,
                    "title": f"{party} {action}s {spec.suffix}",
                    "channel": {"$ref": f"#/channels/{channel_name}"},
                    "messages": refs,
                }
    asyncapi = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Chime events",
            "version": "1",
            "description": (
                "CloudEvents 1.0 (structured JSON mode) on Kafka, keyed by schedule id and partitioned with "
                "murmur2. Topic names carry CHIME_TOPIC_PREFIX (default `chime.`). Each message's payload is "
                "the whole CloudEvent; its `data` is described by the schema the payload refers to."
            ),
        },
        "defaultContentType": "application/cloudevents+json",
        "servers": {
            "kafka": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local broker of `make run`; set CHIME_KAFKA_BOOTSTRAP for yours.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }
    files["asyncapi.json"] = _dump(asyncapi)
    return files


def write(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in render().items():
        (directory / name).write_text(content)


COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "events"


def stale(directory: Path = COMMITTED) -> list[str]:
    """Generated files that are missing, different, or no longer generated."""
    expected = render()
    on_disk = {p.name: p.read_text() for p in directory.glob("*.json")}
    return sorted(n for n in set(expected) | set(on_disk) if expected.get(n) != on_disk.get(n))


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else COMMITTED)
