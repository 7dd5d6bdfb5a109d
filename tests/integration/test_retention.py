"""Retention: runs and dead letters older than CHIME_RUN_RETENTION_DAYS are pruned, recent ones kept."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import insert, select, text

from services.api.recorder import Recorder
from services.dlq.service import DlqService
from shared.db.engine import create_engine
from shared.db.tables import dlq_entries, run_attempts, runs
from shared.settings import Settings
from shared.timefmt import utcnow


async def test_old_runs_and_dead_letters_are_pruned(settings: Settings, tenant: str) -> None:
    engine = create_engine(settings)
    now = utcnow()
    old_run, new_run = uuid.uuid4(), uuid.uuid4()
    schedule = uuid.uuid4()
    try:
        async with engine.begin() as conn:
            for run_id, age in ((old_run, 40), (new_run, 1)):
                when = now - timedelta(days=age)
                await conn.execute(
                    insert(runs).values(
                        id=run_id,
                        schedule_id=schedule,
                        tenant_id=tenant,
                        scheduled_for=when,
                        status="succeeded",
                        trigger="schedule",
                        created_at=when,
                        updated_at=when,
                    )
                )
                await conn.execute(insert(run_attempts).values(run_id=run_id, attempt=1, http_status=200))
                await conn.execute(
                    insert(dlq_entries).values(
                        id=uuid.uuid4(),
                        run_id=run_id,
                        tenant_id=tenant,
                        schedule_id=schedule,
                        scheduled_for=when,
                        trigger="schedule",
                        reason="test",
                        attempt_count=1,
                        attempts=[],
                        run={},
                        status="dead",
                        dead_at=when,
                    )
                )
        assert await Recorder(settings, engine).prune() >= 1
        assert await DlqService(settings, engine).prune() >= 1
        async with engine.connect() as conn:
            kept_runs = set((await conn.execute(select(runs.c.id).where(runs.c.tenant_id == tenant))).scalars())
            kept_attempts = set(
                (
                    await conn.execute(
                        select(run_attempts.c.run_id).where(run_attempts.c.run_id.in_([old_run, new_run]))
                    )
                ).scalars()
            )
            kept_dead = set(
                (await conn.execute(select(dlq_entries.c.run_id).where(dlq_entries.c.tenant_id == tenant))).scalars()
            )
            # The figures per minute that the runs' triggers kept go with them.
            minutes = (
                await conn.execute(
                    text("SELECT minute, succeeded FROM run_minutes WHERE tenant_id = :t ORDER BY minute"),
                    {"t": tenant},
                )
            ).all()
        assert kept_runs == kept_attempts == kept_dead == {new_run}
        assert [(m.minute, m.succeeded) for m in minutes] == [
            ((now - timedelta(days=1)).replace(second=0, microsecond=0), 1)
        ]
    finally:
        await engine.dispose()
