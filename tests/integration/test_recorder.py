"""The recorder's batched writes against the real database: order-independent, idempotent, counters exact."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.db.runs_repo import RunRepository
from services.api.recorder import Recorder
from shared.db.engine import create_engine, driver_connection
from shared.db.tables import run_attempts, runs
from shared.events import RunAttemptFailed, RunDue, RunSucceeded, encode_event
from shared.events.runs import RunDueData, RunOutcomeData, RunStatus, Trigger
from shared.events.schedule import DeliverySpec, RetryPolicy
from shared.runid import planned_run_id
from shared.settings import Settings
from shared.timefmt import utcnow
from tests.integration.helpers import auth, schedule_body


def _due(schedule: dict[str, object], nominal: datetime, *, final: bool = False) -> bytes:
    sid = uuid.UUID(str(schedule["id"]))
    data = RunDueData(
        run_id=planned_run_id(sid, nominal),
        schedule_id=sid,
        tenant_id=str(schedule["tenant"]),
        schedule_version=1,
        nominal_time=nominal,
        planned_time=nominal,
        delivery=DeliverySpec(url="http://127.0.0.1:9/hook"),
        retry_policy=RetryPolicy(),
        final=final,
    )
    return encode_event(RunDue(subject=str(sid), tenant=data.tenant_id, time=utcnow(), data=data))


def _outcome(schedule: dict[str, object], nominal: datetime, attempt: int, status: RunStatus) -> bytes:
    sid = uuid.UUID(str(schedule["id"]))
    started = nominal + timedelta(milliseconds=attempt)
    data = RunOutcomeData(
        run_id=planned_run_id(sid, nominal),
        schedule_id=sid,
        tenant_id=str(schedule["tenant"]),
        nominal_time=nominal,
        trigger=Trigger.SCHEDULE,
        attempt=attempt,
        status=status,
        worker="w1",
        started_at=started,
        finished_at=started + timedelta(milliseconds=5),
        duration_ms=5,
        http_status=200 if status is RunStatus.SUCCEEDED else 503,
    )
    cls = RunSucceeded if status is RunStatus.SUCCEEDED else RunAttemptFailed
    return encode_event(cls(subject=str(sid), tenant=data.tenant_id, time=utcnow(), data=data))


async def created_schedule(
    settings: Settings, client: httpx.AsyncClient, tenant: str
) -> tuple[dict[str, object], datetime]:
    """A schedule made through the API (with its tenant), and a whole minute after its creation to plan runs at."""
    created = await client.post("/api/schedules", json=schedule_body(), headers=auth(settings, tenant))
    assert created.status_code == 201, created.text
    t0 = datetime.fromisoformat(created.json()["created_at"]).replace(microsecond=0) + timedelta(minutes=1)
    return {**created.json(), "tenant": tenant}, t0


async def test_a_batch_in_any_order_records_each_run_once(
    settings: Settings, client: httpx.AsyncClient, tenant: str
) -> None:
    schedule, t0 = await created_schedule(settings, client, tenant)
    a, b, c, d = (t0 + timedelta(minutes=n) for n in range(4))
    batch = [
        _due(schedule, a),
        _outcome(schedule, a, 1, RunStatus.RETRYING),
        _outcome(schedule, c, 1, RunStatus.SUCCEEDED),  # its result overtook its run.due
        _due(schedule, b),
        _outcome(schedule, a, 2, RunStatus.SUCCEEDED),
        _outcome(schedule, a, 1, RunStatus.RETRYING),  # a redelivered record must not move the run back
        _due(schedule, c),
        _due(schedule, a),
    ]
    engine = create_engine(settings)
    try:
        recorder = Recorder(settings, engine)
        await recorder.write(batch)
        await recorder.write(batch[2:6])  # the same records again, as after a crash before the commit
        await recorder.write([_due(schedule, d), _outcome(schedule, d, 1, RunStatus.RETRYING)])  # nothing finished
        ids = {n: planned_run_id(uuid.UUID(schedule["id"]), n) for n in (a, b, c, d)}
        async with engine.connect() as conn:
            rows = {r.id: r for r in (await conn.execute(select(runs).where(runs.c.id.in_(ids.values())))).all()}
            attempts = (
                await conn.execute(
                    select(run_attempts.c.run_id, run_attempts.c.attempt, run_attempts.c.http_status).where(
                        run_attempts.c.run_id.in_(ids.values())
                    )
                )
            ).all()
    finally:
        await engine.dispose()

    assert {n: rows[i].status for n, i in ids.items()} == {
        a: "succeeded",
        b: "queued",
        c: "succeeded",
        d: "retrying",
    }
    assert rows[ids[a]].planned_for == a and rows[ids[a]].finished_at is not None
    assert rows[ids[b]].finished_at is None and rows[ids[d]].finished_at is None
    names = {i: n for n, i in ids.items()}
    assert sorted((names[r.run_id], r.attempt, r.http_status) for r in attempts) == [
        (a, 1, 503),
        (a, 2, 200),
        (c, 1, 200),
        (d, 1, 503),
    ]
    got = (await client.get(f"/api/schedules/{schedule['id']}", headers=auth(settings, tenant))).json()
    assert got["run_count"] == 4
    assert datetime.fromisoformat(got["last_run_at"]) == d


async def _record(settings: Settings, values: list[bytes]) -> None:
    engine = create_engine(settings)
    try:
        await Recorder(settings, engine).write(values)
    finally:
        await engine.dispose()


async def _completed(settings: Settings, client: httpx.AsyncClient, tenant: str) -> dict[str, object]:
    """A schedule whose one planned run the planner reported as its last."""
    created = await client.post("/api/schedules", json=schedule_body(), headers=auth(settings, tenant))
    schedule = {**created.json(), "tenant": tenant}
    nominal = datetime.fromisoformat(created.json()["created_at"]) + timedelta(minutes=1)
    await _record(settings, [_due(schedule, nominal, final=True)])
    return schedule


async def test_a_final_run_completes_the_schedule(settings: Settings, client: httpx.AsyncClient, tenant: str) -> None:
    schedule = await _completed(settings, client, tenant)
    got = (await client.get(f"/api/schedules/{schedule['id']}", headers=auth(settings, tenant))).json()
    assert got["status"] == "completed" and got["run_count"] == 1


async def test_an_edit_reopens_a_completed_schedule(settings: Settings, client: httpx.AsyncClient, tenant: str) -> None:
    headers = auth(settings, tenant)
    schedule = await _completed(settings, client, tenant)
    listed = await client.get("/api/schedules", params={"status": "completed"}, headers=headers)
    assert [s["id"] for s in listed.json()["items"]] == [schedule["id"]]
    paused = await client.post(f"/api/schedules/{schedule['id']}/pause", headers=headers)
    assert paused.status_code == 409, "a completed schedule cannot be paused"

    edited = await client.patch(f"/api/schedules/{schedule['id']}", json={"interval_seconds": 120}, headers=headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["status"] == "active" and edited.json()["version"] == 2
    got = (await client.get(f"/api/schedules/{schedule['id']}", headers=headers)).json()
    assert got["status"] == "active" and got["run_count"] == 1, "the statistics outlive the edit"
    listed = await client.get("/api/schedules", params={"status": "completed"}, headers=headers)
    assert listed.json()["items"] == []


async def test_a_run_now_answers_queued_until_the_recorder_has_its_run(
    settings: Settings, client: httpx.AsyncClient, tenant: str
) -> None:
    headers = auth(settings, tenant)
    created = await client.post("/api/schedules", json=schedule_body(), headers=headers)
    schedule = {**created.json(), "tenant": tenant}
    accepted = await client.post(f"/api/schedules/{schedule['id']}/run-now", headers=headers)
    assert accepted.status_code == 202, accepted.text
    run = accepted.json()
    assert run["status"] == "queued" and run["trigger"] == "run_now"

    got = await client.get(f"/api/runs/{run['id']}", headers=headers)
    assert got.status_code == 200 and got.json()["status"] == "queued" and got.json()["attempts"] == []
    listed = (await client.get(f"/api/schedules/{schedule['id']}/runs", headers=headers)).json()["items"]
    assert [r["id"] for r in listed] == [run["id"]]

    nominal = datetime.fromisoformat(run["scheduled_for"])
    sid = uuid.UUID(schedule["id"])
    due = RunDueData(
        run_id=uuid.UUID(run["id"]),
        schedule_id=sid,
        tenant_id=tenant,
        schedule_version=1,
        nominal_time=nominal,
        planned_time=nominal,
        delivery=DeliverySpec(url="http://127.0.0.1:9/hook"),
        retry_policy=RetryPolicy(),
        trigger=Trigger.RUN_NOW,
    )
    outcome = RunOutcomeData(
        run_id=due.run_id,
        schedule_id=sid,
        tenant_id=tenant,
        nominal_time=nominal,
        trigger=Trigger.RUN_NOW,
        attempt=1,
        status=RunStatus.SUCCEEDED,
        worker="w1",
        started_at=nominal,
        finished_at=nominal + timedelta(milliseconds=5),
        duration_ms=5,
        http_status=200,
    )
    await _record(
        settings,
        [
            encode_event(RunDue(subject=str(sid), tenant=tenant, time=utcnow(), data=due)),
            encode_event(RunSucceeded(subject=str(sid), tenant=tenant, time=utcnow(), data=outcome)),
        ],
    )
    got = (await client.get(f"/api/runs/{run['id']}", headers=headers)).json()
    assert got["status"] == "succeeded" and [a["http_status"] for a in got["attempts"]] == [200]
    listed = (await client.get(f"/api/schedules/{schedule['id']}/runs", headers=headers)).json()["items"]
    assert [(r["id"], r["status"]) for r in listed] == [(run["id"], "succeeded")], "one run, not the request as well"
    schedule_now = (await client.get(f"/api/schedules/{schedule['id']}", headers=headers)).json()
    assert schedule_now["run_count"] == 0, "run-now does not count toward max_runs"


async def _actual_figures(engine: AsyncEngine) -> dict[str, float]:
    async with engine.connect() as conn:
        by_status = (await conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status))).all()
        finished = run_attempts.c.finished_at.is_not(None)
        ok = run_attempts.c.http_status.between(200, 299)
        attempts = (
            await conn.execute(
                select(
                    func.count().filter(finished),
                    func.count().filter(finished & ok),
                    func.coalesce(func.sum(run_attempts.c.duration_ms).filter(finished), 0),
                )
            )
        ).one()
    figures = {f"runs:{status}": float(n) for status, n in by_status}
    names = ("attempts:finished", "attempts:succeeded", "attempts:duration_ms")
    figures |= {name: float(value) for name, value in zip(names, attempts, strict=True) if value}
    return figures


async def test_history_figures_are_kept_equal_to_the_history(
    settings: Settings, client: httpx.AsyncClient, tenant: str
) -> None:
    """The counts behind /metrics follow inserts, status moves, redeliveries and deletes."""
    schedule, t0 = await created_schedule(settings, client, tenant)
    a, b, c = (t0 + timedelta(minutes=n) for n in range(3))
    engine = create_engine(settings)
    try:
        repo = RunRepository(engine)
        recorder = Recorder(settings, engine)
        batch = [_due(schedule, a), _outcome(schedule, a, 1, RunStatus.RETRYING), _due(schedule, b), _due(schedule, c)]
        await recorder.write(batch)
        await recorder.write([*batch, _outcome(schedule, a, 2, RunStatus.SUCCEEDED)])
        await recorder.write([_outcome(schedule, c, 1, RunStatus.SUCCEEDED)])
        assert {k: v for k, v in (await repo.history_figures()).items() if v} == await _actual_figures(engine)
        async with engine.begin() as conn:
            await conn.execute(delete(runs).where(runs.c.id == planned_run_id(uuid.UUID(str(schedule["id"])), a)))
        assert {k: v for k, v in (await repo.history_figures()).items() if v} == await _actual_figures(engine)
    finally:
        await engine.dispose()


async def test_a_batch_sent_to_the_driver_is_one_transaction(settings: Settings) -> None:
    """The recorder writes a batch with statements sent to asyncpg directly; they belong to the transaction the batch
    began, so a failure later in the batch takes them back too."""
    engine = create_engine(settings)
    run_id = uuid.uuid4()
    try:
        with pytest.raises(RuntimeError):
            async with engine.begin() as conn:
                pg = await driver_connection(conn)
                assert pg.is_in_transaction()
                await pg.execute(
                    "INSERT INTO runs (id, schedule_id, tenant_id, scheduled_for, status, trigger)"
                    " VALUES ($1, $2, 'tx-check', now(), 'queued', 'schedule')",
                    run_id,
                    uuid.uuid4(),
                )
                raise RuntimeError("a later statement of the batch failed")
        async with engine.connect() as conn:
            assert (await conn.execute(select(func.count()).where(runs.c.id == run_id))).scalar_one() == 0
        # A connection in autocommit mode is left as it is: each statement is its own transaction.
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            assert not (await driver_connection(conn)).is_in_transaction()
    finally:
        await engine.dispose()
