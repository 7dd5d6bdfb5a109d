"""Generates docs/events/: a JSON Schema per event type and an AsyncAPI 3 document, from the models.

Run ``python -m shared.events.docs`` after changing an event model; a test fails while the files are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from shared.events.catalog import EVENT_TYPES
from shared.topics import (
    DLQ_COMMANDS,
    PLANNER_COMMANDS,
    RUNS_DLQ,
    RUNS_DUE,
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
    "dev.chime.run.due.v1": RUNS_DUE,
    "dev.chime.run.cancelled.v1": RUNS_DUE,
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


def render() -> dict[str, str]:
    """File name -> content for every generated file."""
    files: dict[str, str] = {}
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for model in EVENT_TYPES:
        event_type: str = model.model_fields["type"].default
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://chime.dev/events/{event_type}.json"
        files[f"{event_type}.json"] = _dump(schema)
        name = event_type.removeprefix("dev.chime.").replace(".", "_")
        messages[name] = {
            "name": event_type,
            "contentType": "application/cloudevents+json",
            "payload": {"$ref": f"./{event_type}.json"},
            "headers": {
                "type": "object",
                "properties": {"tenant": {"type": "string", "description": "The owning tenant id"}},
            },
        }
        topic = TOPIC_OF[event_type]
        channel = channels.setdefault(
            topic.suffix.replace(".", "_"),
            {
                "address": f"chime.{topic.suffix}",
                "description": ("Compacted. " if topic.compacted else "") + "Keyed by the schedule id.",
                "messages": {},
            },
        )
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for channel_name, channel in channels.items():
        operations[f"consume_{channel_name}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_name}"},
            "messages": [{"$ref": f"#/channels/{channel_name}/messages/{m}"} for m in channel["messages"]],
        }
    asyncapi = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Chime events",
            "version": "1",
            "description": "CloudEvents 1.0 (structured JSON) on Kafka. Topic names carry CHIME_TOPIC_PREFIX.",
        },
        "defaultContentType": "application/cloudevents+json",
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


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/events"))
