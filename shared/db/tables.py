"""Postgres tables (SQLAlchemy Core). Migrations in services/api/migrations create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

metadata = MetaData()

TS = DateTime(timezone=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", String(200), primary_key=True),
    # Live (not deleted) schedules; bumped in the same transaction as each create and delete, so the
    # quota check is exact even with several API processes.
    Column("schedule_count", Integer, nullable=False, server_default=text("0")),
    Column("signing_keys_version", Integer, nullable=False, server_default=text("0")),
    # Planned fires per second of the tenant's active schedules (each one's ``fire_rate``), kept with every change
    # and checked against CHIME_MAX_FIRES_PER_SECOND_PER_TENANT.
    Column("planned_fire_rate", Float, nullable=False, server_default=text("0")),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
)

schedules = Table(
    "schedules",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("type", String(16), nullable=False),
    Column("cron_expr", String(200)),
    Column("interval_seconds", Integer),
    Column("run_at", TS),
    Column("timezone", String(64), nullable=False),
    Column("start_at", TS),
    Column("end_at", TS),
    Column("max_runs", Integer),
    Column("jitter_seconds", Integer, nullable=False),
    Column("misfire_policy", String(16), nullable=False),
    Column("misfire_grace_seconds", Integer, nullable=False),
    Column("overlap_policy", String(16), nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("retry_policy", JSONB, nullable=False),
    Column("calendar_ids", ARRAY(Uuid), nullable=False, server_default=text("'{}'::uuid[]")),
    Column("auto_pause_after_failures", Integer),
    Column("alert_after_failures", Integer, server_default=text("3")),
    # The failure streak when the schedule was last resumed, and when: auto-pause counts failures after a resume
    # (unless a success since then restarted the streak).
    Column("auto_pause_base", Integer, nullable=False, server_default=text("0")),
    Column("auto_pause_base_at", TS),
    Column("status", String(16), nullable=False),
    Column("paused_reason", Text),
    Column("version", Integer, nullable=False),
    # Planned fires per second (average over a day), summed per tenant against
    # CHIME_MAX_FIRES_PER_SECOND_PER_TENANT.
    Column("fire_rate", Float, nullable=False, server_default=text("0")),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("deleted_at", TS),
    Index("ix_schedules_tenant_id_id", "tenant_id", "id"),
    Index("ix_schedules_calendar_ids", "calendar_ids", postgresql_using="gin"),
    Index("ix_schedules_tenant_status_id", "tenant_id", "status", "id"),
    Index("ix_schedules_labels", "labels", postgresql_using="gin"),
)

# What the runs of a schedule add up to. The recorder is its only writer (the API owns ``schedules`` and joins this
# when it reads one): planned runs counted, the latest nominal time run, and the version the planner finished.
# Exclusion calendars (migration 0009); their content travels inside the schedules that name them.
calendars = Table(
    "calendars",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("exclude_dates", JSONB, nullable=False),
    Column("exclude_weekdays", JSONB, nullable=False),
    Column("exclude_ranges", JSONB, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_calendars_tenant_id_id", "tenant_id", "id"),
)

schedule_stats = Table(
    "schedule_stats",
    metadata,
    Column("schedule_id", Uuid, ForeignKey("schedules.id", ondelete="CASCADE"), primary_key=True),
    Column("run_count", Integer, nullable=False, server_default=text("0")),
    Column("last_run_at", TS),
    # The schedule is completed while its version is still this one; an edit (a new version) reopens it.
    Column("completed_version", Integer),
    # Health: finished runs that failed since the last success, and what was skipped (migration 0008).
    Column("consecutive_failures", Integer, nullable=False, server_default=text("0")),
    Column("last_success_at", TS),
    Column("last_failure_at", TS),
    Column("skipped_total", BigInteger, nullable=False, server_default=text("0")),
    Column("last_skipped_at", TS),
    Column("last_skip_reason", Text),
    Index("ix_schedule_stats_failing", "schedule_id", postgresql_where=text("consecutive_failures > 0")),
)

# Schedules whose failure streak reached their auto_pause_after_failures. The recorder writes a request (it sees
# the streak); the API applies it as a pause (it owns ``schedules``) and deletes it in the same transaction.
auto_pause_requests = Table(
    "auto_pause_requests",
    metadata,
    Column("schedule_id", Uuid, primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("requested_at", TS, nullable=False, server_default=text("now()")),
)

# A tenant's limits per flow (``/api/flow-limits``). A delete keeps the row (``deleted_at``) so the version that
# executors compare on ``chime.flow-limits`` keeps growing across a delete and a new limit.
flow_limits = Table(
    "flow_limits",
    metadata,
    Column("tenant_id", String(200), primary_key=True),
    Column("flow_key", String(200), primary_key=True),
    Column("max_concurrency", Integer, nullable=False),
    Column("max_per_second", Float),
    Column("version", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Column("deleted_at", TS),
)

notification_endpoints = Table(
    "notification_endpoints",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("url", String(2048), nullable=False),
    Column("events", JSONB, nullable=False),
    Column("description", String(500)),
    Column("version", Integer, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    Index("ix_notification_endpoints_tenant_id_id", "tenant_id", "id"),
)

# Notifications waiting for (or recently through) delivery, one per subscribed endpoint. Written in the transaction
# of what they report; ``services/api/notifier.py`` delivers them.
notifications = Table(
    "notifications",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("tenant_id", String(200), nullable=False),
    Column("endpoint_id", Uuid, ForeignKey("notification_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("event_type", String(50), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", TS, nullable=False, server_default=text("now()")),
    Column("delivered_at", TS),
    Column("last_error", Text),
    Index("ix_notifications_due", "next_attempt_at", postgresql_where=text("delivered_at IS NULL")),
    Index("ix_notifications_endpoint_id", "endpoint_id"),
    Index("ix_notifications_delivered_at", "delivered_at"),
)

# Per-tenant token buckets shared by the API processes (``chime_take_tokens``, migration 0005). Key: kind:tenant.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(250), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", TS, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("aggregate_id", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("topic_suffix", String(100), nullable=False),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("published_at", TS),
    Index("ix_outbox_unpublished", "id", postgresql_where=text("published_at IS NULL")),
    Index("ix_outbox_published_at", "published_at"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", String(200), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer),
    Column("resource_id", Uuid),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    PrimaryKeyConstraint("tenant_id", "key"),
    Index("ix_idempotency_keys_created_at", "created_at"),
)

signing_keys = Table(
    "signing_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(200), ForeignKey("tenants.id"), nullable=False),
    Column("ciphertext", Text, nullable=False),
    Column("created_at", TS, nullable=False),
    Column("expires_at", TS),
    Index("ix_signing_keys_tenant", "tenant_id", "created_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("schedule_id", Uuid, nullable=False),
    Column("tenant_id", String(200), nullable=False),
    Column("scheduled_for", TS, nullable=False),
    Column("planned_for", TS),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Column("finished_at", TS),
    Index("ix_runs_schedule_scheduled_for", "schedule_id", "scheduled_for", "id"),
    Index("ix_runs_tenant_status", "tenant_id", "status"),
    Index("ix_runs_created_at", "created_at"),
)

# A run-now as the API accepted it, so ``GET /api/runs/{id}`` answers at once (``queued``) until the recorder has
# the run from its ``run.due``. The API is this table's only writer; ``runs`` is the recorder's.
run_requests = Table(
    "run_requests",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("schedule_id", Uuid, nullable=False),
    Column("tenant_id", String(200), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("requested_at", TS, nullable=False),
    Index("ix_run_requests_schedule_requested_at", "schedule_id", "requested_at"),
)

run_attempts = Table(
    "run_attempts",
    metadata,
    Column("run_id", Uuid, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("worker", String(200)),
    Column("started_at", TS),
    Column("finished_at", TS),
    Column("http_status", Integer),
    Column("duration_ms", Integer),
    Column("error", Text),
    Column("response_excerpt", Text),
    PrimaryKeyConstraint("run_id", "attempt"),
)

dlq_entries = Table(
    "dlq_entries",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("run_id", Uuid, nullable=False, unique=True),
    Column("tenant_id", String(200), nullable=False),
    Column("schedule_id", Uuid, nullable=False),
    Column("scheduled_for", TS, nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("last_http_status", Integer),
    Column("attempt_count", Integer, nullable=False),
    Column("attempts", JSONB, nullable=False),
    Column("run", JSONB, nullable=False),
    # dead: waiting for an operator; replaying: a replay was requested and has not ended; resolved: a replay
    # succeeded.
    Column("status", String(16), nullable=False),
    Column("dead_at", TS, nullable=False),
    Column("replay_count", Integer, nullable=False, server_default=text("0")),
    Column("replay_requested_at", TS),
    Column("created_at", TS, nullable=False, server_default=text("now()")),
    Column("updated_at", TS, nullable=False, server_default=text("now()")),
    Index("ix_dlq_tenant_id", "tenant_id", "id"),
    Index("ix_dlq_tenant_schedule", "tenant_id", "schedule_id"),
    Index("ix_dlq_tenant_status_code", "tenant_id", "last_http_status"),
    Index("ix_dlq_dead_at", "dead_at"),
)
