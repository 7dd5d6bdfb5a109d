"""`make bench` cannot rot: its smoke run produces every figure, for Chime and for the peer, in about two minutes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.stack import run_module


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_bench_smoke_prints_every_figure_and_writes_json() -> None:
    done = run_module("bench", "--smoke", timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in ("lag p99", "CPU per fire", "burst:", "API create p99", "change propagation p99", "bulk pause"):
        assert figure in done.stdout, f"{figure!r} missing from the report:\n{done.stdout}"
    path = Path(done.stdout.rsplit("results: ", 1)[1].strip())
    results = json.loads(path.read_text())
    steady = results["steady"]
    assert steady["chime"]["delivered"] == steady["chime"]["expected"] > 0
    assert steady["apscheduler"]["lag"]["count"] > 0
    assert results["burst"]["chime"]["burst"]["instants"] >= 1
    assert len(results["bulk"]["latest_call_after_answer_ms"]) == 1
    # Other installations' partitions on the broker (this test session's own, at least in a full run) are counted
    # and, when there are any, named under the table.
    foreign = results["broker_partitions_before"]
    assert isinstance(foreign, int) and foreign >= 0
    assert (f"the broker held {foreign:,} partitions" in done.stdout) == (foreign > 0)
    path.unlink()
