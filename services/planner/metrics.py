"""The planner's Prometheus metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class PlannerMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.fired = Counter("chime_planner_runs_due_total", "run.due events published", ["trigger"], registry=r)
        self.stale = Counter(
            "chime_planner_stale_fires_total",
            "Heap items dropped as stale (the schedule changed meanwhile)",
            registry=r,
        )
        self.cancelled = Counter("chime_planner_runs_cancelled_total", "Announced runs cancelled", registry=r)
        self.heap_size = Gauge("chime_planner_heap_entries", "Entries in the fire heaps", registry=r)
        self.lateness = Histogram(
            "chime_planner_publish_late_seconds",
            "How long after its planned time a run.due was published (0 when announced ahead, as it should be)",
            buckets=(0, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30),
            registry=r,
        )
        self.oldest_overdue = Gauge(
            "chime_planner_oldest_overdue_seconds",
            "How far past its announce time the earliest fire in the heaps is (0 when none is overdue)",
            registry=r,
        )
        self.publish_ack = Histogram(
            "chime_planner_publish_ack_seconds",
            "From handing a batch of records to the producer until the broker acknowledged all of them",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.change_delay = Histogram(
            "chime_planner_change_delay_seconds",
            "From the broker's timestamp of a batch's oldest schedule change until the planner applied the batch",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30),
            registry=r,
        )
        self.unseen_changes = Counter(
            "chime_planner_change_offsets_unseen_total",
            "Offsets of chime.schedules passed over between two changes the planner applied",
            registry=r,
        )
        self.skipped = Counter("chime_planner_skipped_total", "Planned fires not run", ["reason"], registry=r)
        self.recovered = Gauge("chime_planner_recovered", "1 once table recovery completed", registry=r)
        self.partitions = Gauge(
            "chime_planner_partitions_owned", "Partitions of chime.schedules this planner fires for", registry=r
        )
        self.cached = Gauge("chime_planner_cached_entries", "Parsed schedule entries held in memory", registry=r)
        self.entry_reads = Counter(
            "chime_planner_entry_reads_total",
            "Schedule entries parsed from the tables because memory did not hold them (CHIME_PLANNER_CACHE_ENTRIES)",
            registry=r,
        )
