"""Consume Chime's run outcomes from Kafka and check each against the published contract.

    python examples/consume_results.py --bootstrap 127.0.0.1:9092            # follow chime.runs.results
    python examples/consume_results.py --from-beginning --limit 10           # the first ten, then exit

Every record is a CloudEvent (structured JSON mode); its `type` names the JSON Schema in docs/events/ that it
matches. A consumer should tolerate fields it does not know (they are added within a version) and types it does
not know (new kinds of outcome). Needs aiokafka and jsonschema (both installed with Chime).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
from aiokafka import AIOKafkaConsumer

SCHEMAS = Path(__file__).resolve().parents[1] / "docs" / "events"


def load_validators() -> dict[str, jsonschema.protocols.Validator]:
    validators: dict[str, jsonschema.protocols.Validator] = {}
    for path in SCHEMAS.glob("dev.chime.*.json"):
        schema = json.loads(path.read_text())
        validators[path.stem] = jsonschema.Draft202012Validator(schema)
    return validators


def describe(event: dict[str, Any]) -> str:
    data = event["data"]
    fields = [event["type"].removeprefix("dev.chime.")]
    fields += [f"tenant={event['tenant']}", f"schedule={data.get('schedule_id')}", f"run={data.get('run_id')}"]
    if "attempt" in data:
        fields.append(f"attempt={data['attempt']}")
    if data.get("http_status") is not None:
        fields.append(f"http={data['http_status']}")
    if data.get("reason"):
        fields.append(f"reason={data['reason']!r}")
    return " ".join(fields)


async def consume(bootstrap: str, topic: str, group: str | None, from_beginning: bool, limit: int | None) -> int:
    validators = load_validators()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=group is not None,
    )
    await consumer.start()
    seen = 0
    try:
        async for record in consumer:
            event = json.loads(record.value or b"{}")
            validator = validators.get(event.get("type", ""))
            if validator is None:
                print(f"skipped: unknown type {event.get('type')!r}")  # noqa: T201 - the example's output
            else:
                validator.validate(event)
                print(describe(event))  # noqa: T201 - the example's output
            seen += 1
            if limit is not None and seen >= limit:
                break
    finally:
        await consumer.stop()
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="chime.runs.results", help="the topic (with its prefix)")
    parser.add_argument("--group", default=None, help="a consumer group, to commit progress (default: none)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    parser.add_argument("--limit", type=int, default=None, help="exit after this many records")
    args = parser.parse_args()
    asyncio.run(consume(args.bootstrap, args.topic, args.group, args.from_beginning, args.limit))


if __name__ == "__main__":
    main()
