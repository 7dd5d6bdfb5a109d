"""The API fuzzed against its own contract (Schemathesis): no 5xx, and every answer as the document says.

It runs against a live ``chime api`` process over the integration database, with no planner or executor, so
the schedules it happens to create never fire. Every operation gets a bounded number of generated requests, the
same ones on every run (derandomized), with a token holding every scope.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.openapi import COMMITTED
from shared.settings import Settings
from tests.integration.helpers import auth
from tests.integration.helpers import live_api as running_api

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@pytest.fixture(scope="module")
def live_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = Path(tmp_path_factory.mktemp("fuzz")) / "api.log"
    unlimited = {
        "CHIME_RATE_LIMIT_PER_SECOND": "100000",
        "CHIME_RUN_NOW_PER_MINUTE": "1000000",
        "CHIME_REPLAYS_PER_MINUTE": "1000000",
    }
    with running_api(settings, log, **unlimited) as url:
        yield url


def test_the_api_keeps_its_contract(live_api: str, settings: Settings) -> None:
    contract = schemathesis.openapi.from_dict(json.loads(COMMITTED.read_text()))
    headers = auth(settings, "fuzz")
    answered: dict[int, int] = {}
    operations = [result.ok() for result in contract.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(
            max_examples=25,
            derandomize=True,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def keeps_contract(case: Any) -> None:
            response = case.call_and_validate(base_url=live_api, headers=headers, checks=CHECKS)
            answered[response.status_code] = answered.get(response.status_code, 0) + 1

        keeps_contract()
    # The generated requests reached the handlers, not just the validation layer, and were refused where invalid.
    assert sum(answered.values()) >= 5 * len(operations), answered
    print(f"fuzzed {len(operations)} operations: answers by status {dict(sorted(answered.items()))}")
    assert answered.get(200, 0) and answered.get(201, 0) and answered.get(422, 0), answered
