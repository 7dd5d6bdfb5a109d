"""The bench's CPU accounting: a process counts its children, except those measured under a name of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.stats import cpu_seconds, process_age_s

_BURN = "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass\ninput()\n"


def test_a_child_measured_on_its_own_is_not_counted_in_its_parent_too() -> None:
    child = subprocess.Popen([sys.executable, "-c", _BURN], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while sum(cpu_seconds({"child": child.pid})["child"]) < 0.4:
            assert time.monotonic() < deadline, "the child did not burn its CPU"
            time.sleep(0.05)
        me = os.getpid()
        alone = sum(cpu_seconds({"parent": me})["parent"])
        both = cpu_seconds({"parent": me, "child": child.pid})
        burnt = sum(both["child"])
        assert burnt >= 0.4
        # Unnamed, the child is part of its parent (as the API's workers are part of the API); named, only itself.
        assert alone >= sum(both["parent"]) + burnt - 0.05
        assert sum(both["parent"]) < alone - 0.3
    finally:
        child.communicate(b"\n", timeout=10)


def test_a_process_age_counts_from_its_start() -> None:
    """The bench waits for a young broker by its age; a process started now is a fraction of a second old."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.5)
        age = process_age_s(child.pid)
        assert 0.3 < age < 5, age
        assert process_age_s(os.getpid()) >= age
    finally:
        child.kill()
        child.wait()
