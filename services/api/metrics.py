"""Prometheus metrics of the API process. Business gauges are read from Postgres at scrape time."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chime_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "chime_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=self.registry,
        )
        self.schedules = Gauge("chime_schedules", "Schedules by status", ["status"], registry=self.registry)
        self.runs = Gauge("chime_runs", "Runs in the history by status", ["status"], registry=self.registry)
        self.success_rate = Gauge(
            "chime_run_attempt_success_ratio", "Share of finished attempts that got a 2xx", registry=self.registry
        )
        # Over all recorded history; over a window, use the executor's chime_executor_call_duration_seconds.
        self.avg_duration = Gauge(
            "chime_run_attempt_duration_average_seconds",
            "Average webhook call duration over the recorded history",
            registry=self.registry,
        )
        self.outbox_backlog = Gauge("chime_outbox_backlog", "Outbox rows not yet in Kafka", registry=self.registry)
        self.outbox_oldest = Gauge(
            "chime_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row", registry=self.registry
        )
        self.auto_paused = Counter(
            "chime_schedules_auto_paused_total",
            "Schedules this process paused after their auto_pause_after_failures",
            registry=self.registry,
        )
        self.notifications_sent = Counter(
            "chime_notifications_sent_total",
            "Notification deliveries this process tried, by outcome (delivered, failed)",
            ["outcome"],
            registry=self.registry,
        )
        self.notifications_dropped = Counter(
            "chime_notifications_dropped_total",
            "Notifications given up after 24 hours of failed deliveries",
            registry=self.registry,
        )
        # The relay's (services.api.outbox.RelayMetrics).
        self.published = Counter(
            "chime_outbox_published_total", "Outbox rows this process published to Kafka", registry=self.registry
        )
        self.lag = Histogram(
            "chime_outbox_relay_lag_seconds",
            "From a change's commit to its publication in Kafka",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30, 120),
            registry=self.registry,
        )


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` runs each request in a task group with memory
    streams between the layers, which costs more CPU than a simple request's own work.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            route: Any = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"]
            self._metrics.latency.labels(method, path).observe(time.perf_counter() - start)
            self._metrics.requests.labels(method, path, str(status)).inc()
