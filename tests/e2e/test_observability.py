"""What operators look at: every service's /metrics after real deliveries (families, types, labels, values that
moved), promtool's lint of each scrape, and the dashboard and alert rules naming only metrics that exist."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from shared.settings import Settings
from shared.topics import PLANNER_COMMANDS, RUNS_DLQ, RUNS_DUE, RUNS_RESULTS, SCHEDULES, SIGNING_KEYS, topic_name
from tests.e2e.stack import RecordingSink, Stack
from tests.integration.helpers import auth, read_all, schedule_body

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = ROOT / ".chime" / "prometheus" / "usr" / "bin" / "promtool"
SERVICES = ("api", "planner", "executor", "recorder", "dlq")
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


class Scrape:
    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def family(self, name: str, kind: str) -> list[Sample]:
        family = self.families.get(name)
        assert family is not None, f"{name} is not exported"
        assert family.type == kind, f"{name} is a {family.type}, not a {kind}"
        return list(family.samples)

    def value(self, sample_name: str, **labels: str) -> float:
        name = sample_name.removesuffix("_total").removesuffix("_count")
        found = [
            s.value
            for s in self.families[name].samples
            if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        return sum(found)

    def names(self) -> set[str]:
        """Every series name a query can use, including families with no sample yet."""
        found = {s.name for f in self.families.values() for s in f.samples}
        for family in self.families.values():
            found |= {family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",))}
        return found


async def _scrape_all(stack: Stack) -> dict[str, Scrape]:
    urls = {name: f"{stack.ops_url(name)}/metrics" for name in SERVICES if name != "api"}
    urls["api"] = f"{stack.api_url}/metrics"
    async with httpx.AsyncClient(timeout=10) as client:
        return {name: Scrape((await client.get(url)).raise_for_status().text) for name, url in urls.items()}


@pytest.fixture(scope="module")
async def scrapes(
    stack: Stack, api: httpx.AsyncClient, sink: RecordingSink, e2e_settings: Settings
) -> dict[str, Scrape]:
    tenant = "observability"
    headers = auth(e2e_settings, tenant)
    ok = schedule_body(interval_seconds=1, payload={"url": f"{sink.url}/observed"})
    gone = schedule_body(interval_seconds=1, payload={"url": f"{sink.url}/gone?status=404"})
    ids = []
    for body in (ok, gone):
        response = await api.post("/api/schedules", json=body, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])

    def enough() -> bool:
        return sum(a.path == "/observed" for a in sink.arrivals) >= 3 and any(a.path == "/gone" for a in sink.arrivals)

    assert await sink.wait_until(enough, timeout=30), "the schedules did not fire"
    try:
        # The recorder and the DLQ service trail the executor, and the executor counts a call once its answer is
        # in (a moment after the sink saw it); their counters are read once they moved.
        for _ in range(30):
            scraped = await _scrape_all(stack)
            executor = scraped["executor"]
            counted = executor.value("chime_executor_attempts_total", outcome="succeeded", status_class="2xx")
            if (
                counted >= 3
                and scraped["dlq"].value("chime_dlq_entries_total") > 0
                and scraped["recorder"].value("chime_recorder_events_total")
            ):
                return scraped
            await asyncio.sleep(1)
        return scraped
    finally:
        for schedule_id in ids:
            await api.delete(f"/api/schedules/{schedule_id}", headers=headers)


def test_executor_metrics_moved_with_deliveries(scrapes: dict[str, Scrape]) -> None:
    executor = scrapes["executor"]
    executor.family("chime_executor_attempts", "counter")
    assert executor.value("chime_executor_attempts_total", outcome="succeeded", status_class="2xx") >= 3
    assert executor.value("chime_executor_attempts_total", outcome="dead_lettered", status_class="4xx") >= 1
    assert executor.value("chime_executor_dead_letters_total", cause="permanent") >= 1
    lag = executor.family("chime_executor_call_lag_seconds", "histogram")
    assert {s.labels.get("le") for s in lag if s.name.endswith("_bucket")} >= {"0.005", "0.01", "0.025", "0.05"}
    assert executor.value("chime_executor_call_lag_seconds_count") >= 4
    lags = [s for s in executor.family("chime_consumer_lag", "gauge")]
    assert lags and all({"group", "topic", "partition"} <= set(s.labels) for s in lags)
    assert all(s.labels["group"].endswith("chime.executor") for s in lags)


def test_planner_recorder_dlq_and_api_metrics(scrapes: dict[str, Scrape]) -> None:
    planner = scrapes["planner"]
    assert planner.value("chime_planner_runs_due_total") >= 4
    assert planner.value("chime_planner_partitions_owned") > 0
    assert planner.value("chime_planner_recovered") == 1
    planner.family("chime_planner_heap_entries", "gauge")
    assert planner.value("chime_planner_oldest_overdue_seconds") < 5
    assert scrapes["recorder"].value("chime_recorder_events_total") >= 4
    assert scrapes["dlq"].value("chime_dlq_entries_total") >= 1
    api = scrapes["api"]
    api.family("chime_http_request_duration_seconds", "histogram")
    assert api.value("chime_http_requests_total", method="POST", route="/api/schedules", status="201") >= 2
    assert api.value("chime_outbox_published_total") >= 2
    assert api.value("chime_outbox_relay_lag_seconds_count") >= 2
    for name in ("chime_schedules", "chime_runs", "chime_run_attempt_success_ratio"):
        api.family(name, "gauge")


def test_no_schedule_or_run_id_is_a_label(scrapes: dict[str, Scrape]) -> None:
    uuid_like = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")
    for service, scrape in scrapes.items():
        for family in scrape.families.values():
            for sample in family.samples:
                assert not any(uuid_like.match(v) for v in sample.labels.values()), (service, sample)


@pytest.mark.parametrize("service", SERVICES)
def test_promtool_accepts_each_scrape(scrapes: dict[str, Scrape], service: str) -> None:
    assert PROMTOOL.exists(), "promtool is missing: `make install` unpacks it into .chime/prometheus"
    done = subprocess.run(
        [str(PROMTOOL), "check", "metrics"], input=scrapes[service].text, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _queries() -> list[tuple[str, str]]:
    dashboard: dict[str, Any] = json.loads((ROOT / "deploy" / "grafana" / "chime.json").read_text())
    found = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    found += [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]
    return found


def test_dashboard_and_alerts_name_only_exported_metrics(scrapes: dict[str, Scrape]) -> None:
    exported = set().union(*(scrape.names() for scrape in scrapes.values()))
    queries = _queries()
    assert len(queries) >= 20
    for where, expr in queries:
        for name in re.findall(r"\bchime_[a-z0-9_]+", expr):
            assert name in exported, f"{where}: {name} is not exported by any service"


async def test_every_record_is_a_cloudevent_matching_its_published_schema(
    scrapes: dict[str, Scrape], e2e_settings: Settings
) -> None:
    """Read back what the stack wrote with the CloudEvents SDK, and check each against docs/events."""
    schemas = {p.stem: json.loads(p.read_text()) for p in (ROOT / "docs" / "events").glob("dev.chime.*.json")}
    seen: set[str] = set()
    for spec in (SCHEDULES, SIGNING_KEYS, PLANNER_COMMANDS, RUNS_DUE, RUNS_RESULTS, RUNS_DLQ):
        for record in await read_all(e2e_settings, topic_name(e2e_settings, spec)):
            if record.value is None:
                continue  # a compacted topic's tombstone
            message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
            event = from_kafka_event(message)
            assert event.get_attributes()["specversion"] == "1.0"
            event_type = str(event.get_attributes()["type"])
            assert event_type in schemas, f"{spec.suffix}: {event_type} has no published schema"
            jsonschema.Draft202012Validator(schemas[event_type]).validate(json.loads(record.value))
            seen.add(event_type)
    assert {
        "dev.chime.schedule.upserted.v1",
        "dev.chime.run.due.v1",
        "dev.chime.run.succeeded.v1",
        "dev.chime.run.dead_lettered.v1",
        "dev.chime.dlq.entry.v1",
    } <= seen


def test_the_consumer_example_reads_and_validates_results(scrapes: dict[str, Scrape], e2e_settings: Settings) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "consume_results.py"),
            "--bootstrap",
            e2e_settings.kafka_bootstrap,
            "--topic",
            topic_name(e2e_settings, RUNS_RESULTS),
            "--from-beginning",
            "--limit",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("run.") for line in lines), done.stdout


async def test_every_service_reports_liveness_and_readiness_with_its_dependencies(stack: Stack) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for name in ("planner", "executor", "recorder", "dlq"):
            live = await client.get(f"{stack.ops_url(name)}/health")
            assert (live.status_code, live.json()) == (200, {"status": "ok"}), name
            ready = await client.get(f"{stack.ops_url(name)}/health/detailed")
            assert ready.status_code == 200, (name, ready.text)
            checks = ready.json()["checks"]
            expected = {"kafka", "database"} if name in ("recorder", "dlq") else {"kafka"}
            assert set(checks) == expected, name
            for check in checks.values():
                assert check["status"] == "ok" and check["latency_ms"] >= 0, (name, check)
            assert checks["kafka"]["detail"].startswith("metadata from"), checks
        api = (await client.get(f"{stack.api_url}/health/detailed")).json()
        assert api["checks"]["kafka"]["detail"].startswith("metadata from"), api


async def test_logs_name_the_run_and_never_a_secret(
    scrapes: dict[str, Scrape], stack: Stack, api: httpx.AsyncClient, e2e_settings: Settings
) -> None:
    headers = auth(e2e_settings, "observability")
    keys = (await api.get("/api/signing-keys", headers=headers)).json()["items"]
    secrets = [k["secret"] for k in keys]
    secrets += [s.split("_", 1)[-1] for s in secrets]  # the key material without its whsec_ prefix
    secrets += [headers["Authorization"].removeprefix("Bearer ")]
    secrets += [e2e_settings.jwt_secret.get_secret_value(), e2e_settings.master_key.get_secret_value()]
    logs = {path.name: path.read_text(errors="replace") for path in stack.log_dir.glob("*.log")}
    assert {"api.log", "planner.log", "executor.log", "recorder.log", "dlq.log"} <= set(logs)
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} carries a secret"
    lines = logs["executor.log"].splitlines()
    dead = [line for line in lines if "run dead-lettered" in line and "tenant=observability" in line]
    assert dead, "the dead-lettered run was not logged with its tenant"
    for field in ("schedule=", "run_id=", "attempt="):
        assert field in dead[0], dead[0]
