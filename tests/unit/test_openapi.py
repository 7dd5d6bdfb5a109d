"""The published contract: committed, valid OpenAPI 3.1, and complete about errors and auth."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from openapi_spec_validator import validate

from services.api.app import create_app
from services.api.openapi import COMMITTED, render
from services.api.problems import PROBLEM_JSON
from shared.settings import load_settings


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    document: dict[str, Any] = create_app(load_settings(_env_file=None)).openapi()
    return document


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, methods in spec["paths"].items() for method, op in methods.items()]


def test_the_committed_document_is_current() -> None:
    current = render(create_app(load_settings(_env_file=None)))
    assert COMMITTED.read_text() == current, "docs/openapi.json is stale: run `chime openapi` and commit it"


def test_it_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(json.loads(json.dumps(spec)))


def test_every_error_is_problem_json_with_the_shared_schema(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        for code, response in op["responses"].items():
            if code.startswith("4") or (code == "503" and path.startswith("/api/")):
                content = response["content"]
                assert list(content) == [PROBLEM_JSON], (method, path, code)
                ref = content[PROBLEM_JSON]["schema"]["$ref"]
                expected = "ValidationProblem" if code == "422" else "Problem"
                assert ref == f"#/components/schemas/{expected}", (method, path, code)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert "errors" in spec["components"]["schemas"]["ValidationProblem"]["properties"]


def test_api_operations_are_bearer_secured_and_name_their_scope(spec: dict[str, Any]) -> None:
    scheme = spec["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    api = [(path, method, op) for path, method, op in _operations(spec) if path.startswith("/api/")]
    assert len(api) >= 20
    for path, method, op in api:
        assert op["security"] == [{"bearerAuth": []}], (method, path)
        assert re.search(r"Requires the `[a-z]+:(read|write)` scope", op["description"]), (method, path)
        assert {"401", "403", "429", "503"} <= set(op["responses"]), (method, path)
        if "{" in path:
            assert "404" in op["responses"], (method, path)


def test_operation_ids_are_stable_camel_case(spec: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids
    assert {"createSchedule", "listSchedules", "listRuns", "getRun", "replayDeadLetter", "runScheduleNow"} <= set(ids)


def test_the_create_body_has_examples(spec: dict[str, Any]) -> None:
    examples = spec["components"]["schemas"]["ScheduleCreate"]["examples"]
    assert {e["type"] for e in examples} == {"cron", "interval"}
