"""`make chaos --quick` runs inside `make test`: every service killed once under load, and nothing lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.stack import run_module


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_quick_chaos_kills_every_service_and_loses_nothing() -> None:
    done = run_module("chaos", "--quick", timeout=580)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    path = Path(done.stdout.rsplit("results: ", 1)[1].strip())
    (scenario,) = json.loads(path.read_text())["scenarios"]
    # A run that fired little would prove little: 150 schedules at 1-3 s over the fault window.
    assert scenario["expected"] > 1000, scenario
    assert scenario["delivered"] == scenario["expected"], scenario
    assert scenario["lost"] == 0 and scenario["duplicate_ids"] == 0 and scenario["after_delete"] == 0, scenario
    for service in ("api", "recorder", "planner", "executor", "dlq"):
        assert f"kill -9 {service}" in done.stderr and f"{service} is back" in done.stderr
    path.unlink()
