"""docs/events/ is the event contract: current with the models, a valid AsyncAPI 3 document that covers every
topic (retry tiers and quarantine included) with who sends and who receives, and JSON Schemas that say so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from shared.events.catalog import EVENT_TYPES
from shared.events.docs import COMMITTED, stale
from shared.settings import load_settings
from shared.topics import ALL_TOPICS, topic_name

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def asyncapi() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((COMMITTED / "asyncapi.json").read_text())
    return document


def test_event_docs_are_in_sync_with_the_models() -> None:
    assert stale() == [], "docs/events is stale: run `chime schema export` and commit it"


def test_asyncapi_document_is_valid(asyncapi: dict[str, Any]) -> None:
    schema = json.loads((FIXTURES / "asyncapi-3.0.0.schema.json").read_text())
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(schema).iter_errors(asyncapi)]
    assert errors == []


def test_every_topic_is_a_channel_with_senders_receivers_and_a_key(asyncapi: dict[str, Any]) -> None:
    settings = load_settings(_env_file=None)
    addresses = {c["address"]: name for name, c in asyncapi["channels"].items()}
    assert set(addresses) == {topic_name(settings, spec) for spec in ALL_TOPICS}
    assert asyncapi["servers"]["kafka"]["protocol"] == "kafka"
    for name, channel in asyncapi["channels"].items():
        actions = {op["action"] for op in asyncapi["operations"].values() if op["channel"]["$ref"].endswith(f"/{name}")}
        assert actions == {"send", "receive"}, name
        for ref in channel["messages"].values():
            message = asyncapi["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            if message["name"].startswith("dev.chime."):
                assert message["bindings"]["kafka"]["key"]["type"] == "string"
    retry_tier = next(c for c in asyncapi["channels"].values() if c["address"].startswith("chime.runs.retry."))
    assert list(retry_tier["messages"]) == ["runDueV1"]


def test_each_event_has_a_dialect_and_typed_times() -> None:
    for model in EVENT_TYPES:
        event_type = model.model_fields["type"].default
        schema = json.loads((COMMITTED / f"{event_type}.json").read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["time"].get("format") == "date-time", event_type
