"""Garbage-collector pauses: measured on /metrics, made rare, and kept short after start-up.

CPython's cyclic collector stops the process while it scans, and every webhook due in that pause is late by as
much. Its default thresholds collect the youngest generation every 700 net allocations: at 1,000 fires/s the
executor collected 16 times a second and its older generations often enough that collections were most of its
lag above 5 ms. Chime's services free almost everything by reference counting, so the collector only has
cycles to find; collecting every 20,000 allocations finds them as well, with a pause about as long (a scan
costs what is alive, not what was allocated) and far fewer of them. Freezing what start-up built (modules,
models, caches; for the planner, the entries rebuilt on recovery) takes it out of every later scan.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram


class GcPauses:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._pause = Histogram(
            "chime_gc_pause_seconds",
            "Time the process stood still in a garbage collection, by generation",
            ["generation"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=registry,
        )
        self._started = 0.0

    def install(self) -> None:
        gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._pause.labels(str(info.get("generation", ""))).observe(time.perf_counter() - self._started)


# Allocations between young collections, and young (then middle) collections between older ones.
_THRESHOLDS = (20_000, 20, 20)


def tune_collector() -> None:
    """Call once at process start: fewer collections, each about as short."""
    gc.set_threshold(*_THRESHOLDS)


def freeze_startup_heap() -> None:
    """Call once a service is up: everything alive now leaves the collector's scans for good."""
    gc.collect()
    gc.freeze()
