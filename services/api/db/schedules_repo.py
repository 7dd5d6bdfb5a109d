"""Schedules in Postgres. Every change bumps ``version`` and writes its event to the outbox in one transaction."""

from __future__ import annotations

import base64
import dataclasses
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Float, Insert, Row, Select, Uuid, and_, bindparam, case, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.api.db.calendar_rows import named_calendars
from services.api.errors import (
    FireRateExceeded,
    IdempotencyKeyReused,
    InvalidTransition,
    QuotaExceeded,
    ScheduleNotFound,
    VersionMismatch,
)
from services.api.models import ScheduleStats
from services.api.outbox import OUTBOX_COLUMNS, enqueue, enqueue_many, outbox_values
from services.api.run_health import failures_toward_pause
from shared.db.engine import DriverStatement
from shared.db.tables import idempotency_keys, outbox, run_requests, runs, schedule_stats, schedules, tenants
from shared.errors import InvalidSchedule, InvalidSelector
from shared.events import BackfillCommand, RunNowCommand, ScheduleDeleted, ScheduleStopped, ScheduleUpserted
from shared.events.catalog import BackfillCommandData, RunNowCommandData
from shared.events.notifications import ScheduleAutoPausedData
from shared.events.runs import RunStatus, Trigger
from shared.events.schedule import (
    ScheduleDefinition,
    ScheduleDeletedData,
    ScheduleState,
    ScheduleStatus,
    ScheduleStoppedData,
    StoppedVersion,
    plan_spec,
)
from shared.partitioning import key_partition
from shared.runid import adhoc_run_id, new_entity_id, planned_run_id
from shared.schedule import average_fire_rate, iter_fires
from shared.settings import Settings
from shared.timefmt import utcnow
from shared.topics import PLANNER_COMMANDS, RUNS_DUE, SCHEDULES

IDEMPOTENCY_WINDOW_S = 24 * 3600
log = logging.getLogger(__name__)

_DEFINITION_FIELDS = tuple(ScheduleDefinition.model_fields)


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    state: ScheduleState
    last_run_at: datetime | None
    run_count: int
    stats: ScheduleStats = ScheduleStats()


@dataclass(frozen=True, slots=True)
class ListFilter:
    status: ScheduleStatus | None = None
    type: str | None = None
    name_prefix: str | None = None
    labels: dict[str, str | None] | None = None
    failing: bool | None = None
    ids: tuple[uuid.UUID, ...] | None = None


def encode_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    padded = cursor + "=" * (-len(cursor) % 4)
    return base64.urlsafe_b64decode(padded.encode()).decode()


# A schedule as the API reads it: its own row, joined with what the recorder counted (``schedule_stats``).
_WITH_STATS = schedules.outerjoin(schedule_stats, schedule_stats.c.schedule_id == schedules.c.id)
# ``completed`` is the recorder's fact about a version: an active schedule whose current version the planner finished.
_STATUS = case(
    (
        and_(
            schedules.c.status == ScheduleStatus.ACTIVE.value,
            schedule_stats.c.completed_version == schedules.c.version,
        ),
        ScheduleStatus.COMPLETED.value,
    ),
    else_=schedules.c.status,
)
_HEALTH_COLUMNS = tuple(ScheduleStats.model_fields)
_SELECT = select(
    schedules,
    schedule_stats.c.run_count,
    schedule_stats.c.last_run_at,
    *(schedule_stats.c[name] for name in _HEALTH_COLUMNS),
    _STATUS.label("effective_status"),
).select_from(_WITH_STATS)


def _state(row: Row[Any], status_column: str = "status") -> ScheduleState:
    """The schedule of a ``schedules`` row, with its status from ``status_column``."""
    m = row._mapping
    values = {k: m[k] for k in (*_DEFINITION_FIELDS, *_STATE_ONLY)}
    values["status"] = m[status_column]
    return ScheduleState.model_validate(values)


def _record(row: Row[Any]) -> ScheduleRecord:
    m = row._mapping
    state = _state(row, "effective_status")
    # Before the recorder's first write for a schedule there is no stats row: the defaults stand.
    health = {k: m[k] for k in _HEALTH_COLUMNS if m[k] is not None}
    return ScheduleRecord(
        state=state,
        last_run_at=m["last_run_at"],
        run_count=m["run_count"] or 0,
        stats=ScheduleStats.model_validate(health),
    )


_STATE_ONLY = ("id", "tenant_id", "status", "version", "created_at", "updated_at", "paused_reason")


def fire_rate(state: ScheduleState) -> float:
    if state.status is not ScheduleStatus.ACTIVE:
        return 0.0
    return average_fire_rate(plan_spec(state, state.id, state.created_at), utcnow())


def _columns(state: ScheduleState) -> dict[str, Any]:
    values = state.model_dump(mode="python", exclude={"calendars"})
    values["fire_rate"] = fire_rate(state)
    values["payload"] = state.payload.model_dump(mode="json")
    values["retry_policy"] = state.retry_policy.model_dump(mode="json")
    values["type"] = state.type.value
    values["misfire_policy"] = state.misfire_policy.value
    values["overlap_policy"] = state.overlap_policy.value
    values["status"] = state.status.value
    return values


def check_if_match(if_match: str | None, version: int, what: str = "schedule") -> None:
    if if_match is None:
        return
    tags = [t.strip() for t in if_match.split(",")]
    if "*" in tags:
        return
    wanted = {t.removeprefix("W/").strip('"') for t in tags}
    if str(version) not in wanted:
        raise VersionMismatch(f"{what} is at version {version}; If-Match was {if_match}")


async def _live_row(
    conn: AsyncConnection, tenant: str, schedule_id: uuid.UUID, *, for_update: bool = False
) -> Row[Any]:
    """The tenant's schedule, not deleted; another tenant's answers exactly like a missing one."""
    query = _SELECT.where(
        schedules.c.id == schedule_id,
        schedules.c.tenant_id == tenant,
        schedules.c.status != ScheduleStatus.DELETED.value,
    )
    row = (await conn.execute(query.with_for_update(of=schedules) if for_update else query)).first()
    if row is None:
        raise ScheduleNotFound(f"no schedule {schedule_id}")
    return row


# Statements on the create path are built once: building and hashing a statement per call costs more CPU than
# Postgres spends running it.
# The tenant's planned fires per second, kept in its row (``tenants.planned_fire_rate``) as schedules are created,
# changed and deleted: one conditional update instead of summing every schedule of the tenant on each write.
_DELTA = bindparam("delta", type_=Float)
_ADD_FIRE_RATE = (
    update(tenants)
    .where(
        tenants.c.id == bindparam("tenant"),
        (_DELTA <= 0.0) | (tenants.c.planned_fire_rate + _DELTA <= bindparam("limit", type_=Float)),
    )
    .values(planned_fire_rate=func.greatest(0.0, tenants.c.planned_fire_rate + _DELTA))
    .returning(tenants.c.planned_fire_rate)
)
_TENANT_LOAD = select(tenants.c.schedule_count, tenants.c.planned_fire_rate).where(tenants.c.id == bindparam("tenant"))


def _create_statement() -> Insert:
    """A create in one round trip: claim the tenant's slot and fire rate, insert the schedule, add its outbox row.

    Each step selects from the one before, so a refused claim inserts nothing. Parameters: ``s_*`` for the
    schedule's columns, ``o_*`` for the outbox row, ``c_*`` for the claim. None is named like a column: SQLAlchemy
    would add such a parameter to the tenant insert's values.
    """
    rate = bindparam("c_rate", type_=Float)
    claimed = (
        pg_insert(tenants)
        .values(id=bindparam("c_tenant"), schedule_count=1, planned_fire_rate=rate)
        .on_conflict_do_update(
            index_elements=[tenants.c.id],
            set_={
                "schedule_count": tenants.c.schedule_count + 1,
                "planned_fire_rate": tenants.c.planned_fire_rate + rate,
            },
            where=(tenants.c.schedule_count < bindparam("c_quota"))
            & ((rate <= 0.0) | (tenants.c.planned_fire_rate + rate <= bindparam("c_limit", type_=Float))),
        )
        .returning(tenants.c.id)
        .cte("claimed")
    )
    names = [n for n in (*ScheduleState.model_fields, "fire_rate") if n in schedules.c]
    row = select(*(bindparam(f"s_{n}", type_=schedules.c[n].type) for n in names)).select_from(claimed)
    created = insert(schedules).from_select(names, row).returning(schedules.c.id).cte("created")
    queued = select(*(bindparam(f"o_{n}", type_=outbox.c[n].type) for n in OUTBOX_COLUMNS)).select_from(created)
    return insert(outbox).from_select(list(OUTBOX_COLUMNS), queued).returning(outbox.c.id)


_CREATE = DriverStatement(_create_statement())


async def _add_fire_rate(conn: AsyncConnection, settings: Settings, tenant: str, delta: float) -> None:
    """Count ``delta`` planned fires per second to the tenant; refuse a rise that would take it over its quota."""
    if delta == 0:
        return
    limit = settings.max_fires_per_second_per_tenant
    done = (await conn.execute(_ADD_FIRE_RATE, {"tenant": tenant, "delta": delta, "limit": limit})).first()
    if done is None and delta > 0:
        load = (await conn.execute(_TENANT_LOAD, {"tenant": tenant})).first()
        current = float(load.planned_fire_rate) if load is not None else 0.0
        raise FireRateExceeded(
            f"this change would plan {current + delta:.2f} fires per second for the tenant; the limit is {limit:g}"
        )


class BulkAction(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"


_SET_STATUS = (
    update(schedules)
    .where(schedules.c.id == bindparam("b_id"))
    .values(
        status=bindparam("b_status"),
        version=bindparam("b_version"),
        updated_at=bindparam("b_now"),
        fire_rate=bindparam("b_rate"),
        paused_reason=bindparam("b_reason"),
    )
)
# A resume starts auto-pause's count afresh: the streak so far is its base (the stats row is the recorder's; this
# only reads it).
_REBASE_STREAKS = text(
    "UPDATE schedules AS s SET auto_pause_base = coalesce(st.consecutive_failures, 0), auto_pause_base_at = :now"
    " FROM schedules AS s2 LEFT JOIN schedule_stats AS st ON st.schedule_id = s2.id"
    " WHERE s.id = s2.id AND s.id = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(Uuid)))
# Oldest first; SKIP LOCKED so API replicas share the requests instead of queueing on each other.
_TAKE_AUTO_PAUSES = text(
    "DELETE FROM auto_pause_requests WHERE schedule_id IN ("
    " SELECT schedule_id FROM auto_pause_requests ORDER BY requested_at LIMIT :limit FOR UPDATE SKIP LOCKED"
    ") RETURNING schedule_id, failures"
)
# schedule.auto_paused, one per endpoint of the tenant that subscribed to it.
_NOTIFY_AUTO_PAUSED = text(
    "INSERT INTO notifications (id, tenant_id, endpoint_id, event_type, subject, data)"
    " SELECT gen_random_uuid(), e.tenant_id, e.id, 'schedule.auto_paused', :subject, CAST(:data AS jsonb)"
    " FROM notification_endpoints AS e"
    " WHERE e.tenant_id = :tenant AND e.events @> '[\"schedule.auto_paused\"]'::jsonb"
)
_BUMP = (
    update(schedules)
    .where(schedules.c.id == bindparam("b_id"))
    .values(version=bindparam("b_version"), updated_at=bindparam("b_now"))
)
_DELETE_ROW = (
    update(schedules)
    .where(schedules.c.id == bindparam("b_id"))
    .values(
        status=ScheduleStatus.DELETED.value,
        version=bindparam("b_version"),
        updated_at=bindparam("b_now"),
        deleted_at=bindparam("b_now"),
    )
)


async def with_calendars(conn: AsyncConnection, tenant: str, states: Sequence[ScheduleState]) -> list[ScheduleState]:
    """``states`` carrying the calendars they name, as they are now (share-locked until the transaction ends)."""
    found = await named_calendars(conn, tenant, (c for st in states for c in st.calendar_ids))
    if not found:
        return list(states)
    return [st.model_copy(update={"calendars": [found[c] for c in st.calendar_ids]}) for st in states]


def filtered(query: Select[Any], tenant: str, flt: ListFilter) -> Select[Any]:
    """``query`` (over ``_SELECT``) narrowed to the tenant's live schedules that ``flt`` matches."""
    query = query.where(schedules.c.tenant_id == tenant)
    if flt.status is not None:
        query = query.where(_STATUS == flt.status.value)
    else:
        query = query.where(schedules.c.status != ScheduleStatus.DELETED.value)
    if flt.type is not None:
        query = query.where(schedules.c.type == flt.type)
    if flt.name_prefix:
        query = query.where(schedules.c.name.startswith(flt.name_prefix, autoescape=True))
    for key, value in (flt.labels or {}).items():
        if value is None:
            query = query.where(schedules.c.labels.has_key(key))
        else:
            query = query.where(schedules.c.labels.contains({key: value}))
    if flt.failing is True:
        query = query.where(schedule_stats.c.consecutive_failures > 0)
    elif flt.failing is False:
        query = query.where(func.coalesce(schedule_stats.c.consecutive_failures, 0) == 0)
    if flt.ids is not None:
        query = query.where(schedules.c.id.in_(flt.ids))
    return query


class ScheduleRepository:
    def __init__(self, engine: AsyncEngine, settings: Settings, on_commit: Callable[[], None]) -> None:
        self._engine = engine
        # Shares the engine's pool; its connections run each statement in a transaction of its own.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._settings = settings
        self._on_commit = on_commit

    async def _publish_upsert(self, conn: AsyncConnection, state: ScheduleState) -> None:
        (state,) = await with_calendars(conn, state.tenant_id, [state])
        event = ScheduleUpserted(subject=str(state.id), tenant=state.tenant_id, time=state.updated_at, data=state)
        await enqueue(conn, event, SCHEDULES, key=str(state.id), aggregate_id=str(state.id), version=state.version)

    async def _publish_upserts(self, conn: AsyncConnection, tenant: str, states: Sequence[ScheduleState]) -> None:
        resolved = await with_calendars(conn, tenant, states)
        await enqueue_many(
            conn,
            [
                (
                    ScheduleUpserted(subject=str(st.id), tenant=tenant, time=st.updated_at, data=st),
                    SCHEDULES,
                    str(st.id),
                    st.version,
                )
                for st in resolved
            ],
        )

    async def _publish_stops(
        self,
        conn: AsyncConnection,
        tenant: str,
        stopped: Sequence[tuple[uuid.UUID, int]],
        status: ScheduleStatus,
        now: datetime,
    ) -> None:
        """Tell executors directly that these schedules stopped at these versions, ahead of the changes themselves.

        The planner cancels announced runs once it applies a pause or delete; executors act on this record as soon
        as the relay publishes it, which is what keeps a bulk pause of thousands of schedules, or one made while a
        planner restarts, from calling runs after the API has answered. The rows go first, so the relay does too.
        """
        by_partition: dict[int, list[StoppedVersion]] = {}
        for schedule_id, version in stopped:
            partition = key_partition(str(schedule_id).encode(), self._settings.partitions)
            by_partition.setdefault(partition, []).append(
                StoppedVersion(schedule_id=schedule_id, schedule_version=version)
            )
        events = []
        for group in by_partition.values():
            data = ScheduleStoppedData(
                tenant_id=tenant,
                status="deleted" if status is ScheduleStatus.DELETED else "paused",
                stopped_at=now,
                schedules=group,
            )
            first = str(group[0].schedule_id)
            event = ScheduleStopped(subject=first, tenant=tenant, time=now, data=data)
            events.append((event, RUNS_DUE, first, group[0].schedule_version))
        await enqueue_many(conn, events)

    async def lock_calendar_users(self, conn: AsyncConnection, tenant: str, calendar_id: uuid.UUID) -> list[Row[Any]]:
        """The tenant's live schedules that name the calendar, locked in id order (as every schedule change locks)."""
        query = (
            _SELECT.where(
                schedules.c.tenant_id == tenant,
                schedules.c.status != ScheduleStatus.DELETED.value,
                schedules.c.calendar_ids.contains([calendar_id]),
            )
            .order_by(schedules.c.id)
            .with_for_update(of=schedules)
        )
        return list((await conn.execute(query)).all())

    async def republish(self, conn: AsyncConnection, tenant: str, rows: Sequence[Row[Any]], now: datetime) -> None:
        """A new version of each schedule, unchanged but for the calendars it carries (they changed)."""
        if not rows:
            return
        states = [_record(r).state.model_copy(update={"version": r.version + 1, "updated_at": now}) for r in rows]
        await conn.execute(_BUMP, [{"b_id": st.id, "b_version": st.version, "b_now": now} for st in states])
        await self._publish_upserts(conn, tenant, states)

    async def create(
        self, tenant: str, definition: ScheduleDefinition, *, idempotency_key: str | None, request_hash: str
    ) -> tuple[ScheduleRecord, bool]:
        """Create a schedule. Returns it and whether it is the replayed result of an earlier identical request."""
        now = utcnow()
        state = ScheduleState(
            **definition.model_dump(),
            id=new_entity_id(),
            tenant_id=tenant,
            status=ScheduleStatus.ACTIVE,
            version=1,
            created_at=now,
            updated_at=now,
        )
        rate = fire_rate(state)
        limit = self._settings.max_fires_per_second_per_tenant
        if rate > limit:
            raise FireRateExceeded(f"this schedule alone plans {rate:.2f} fires per second; the limit is {limit:g}")
        if idempotency_key is None and not state.calendar_ids:
            # Nothing to read or lock first: the create is one statement, committed on its own.
            async with self._autocommit.connect() as conn:
                await self._insert_new(conn, state, rate)
            self._on_commit()
            return ScheduleRecord(state=state, last_run_at=None, run_count=0), False
        async with self._engine.begin() as conn:
            if idempotency_key is not None:
                earlier = await self._claim_idempotency_key(conn, tenant, idempotency_key, request_hash)
                if earlier is not None:
                    row = (await conn.execute(_SELECT.where(schedules.c.id == earlier))).one()
                    return _record(row), True
            await self._insert_new(conn, state, rate)
            if idempotency_key is not None:
                await conn.execute(
                    update(idempotency_keys)
                    .where(idempotency_keys.c.tenant_id == tenant, idempotency_keys.c.key == idempotency_key)
                    .values(resource_id=state.id, status_code=201)
                )
        self._on_commit()
        return ScheduleRecord(state=state, last_run_at=None, run_count=0), False

    async def _insert_new(self, conn: AsyncConnection, state: ScheduleState, rate: float) -> None:
        """Claim a slot and the fire rate in the tenant's row, insert the schedule and its outbox row: one statement.

        The claim locks the tenant's row, so creates for one tenant are serialized by it and the quota and fire-rate
        sums cannot race another create. When the claim is refused, nothing is inserted and the tenant's row says
        which limit it was.
        """
        (resolved,) = await with_calendars(conn, state.tenant_id, [state])
        event = ScheduleUpserted(subject=str(state.id), tenant=state.tenant_id, time=state.updated_at, data=resolved)
        outbox_row = outbox_values(event, SCHEDULES, str(state.id), str(state.id), state.version)
        params = {
            **{f"s_{k}": v for k, v in _columns(state).items()},
            **{f"o_{k}": v for k, v in outbox_row.items()},
            "c_tenant": state.tenant_id,
            "c_rate": rate,
            "c_quota": self._settings.max_schedules_per_tenant,
            "c_limit": self._settings.max_fires_per_second_per_tenant,
        }
        if await _CREATE.fetchrow(conn, params) is not None:
            return
        current = (await conn.execute(_TENANT_LOAD, {"tenant": state.tenant_id})).one()
        if current.schedule_count >= self._settings.max_schedules_per_tenant:
            raise QuotaExceeded(f"tenant has reached its quota of {self._settings.max_schedules_per_tenant} schedules")
        raise FireRateExceeded(
            f"this change would plan {current.planned_fire_rate + rate:.2f} fires per second for the tenant; "
            f"the limit is {self._settings.max_fires_per_second_per_tenant:g}"
        )

    async def _claim_idempotency_key(
        self, conn: AsyncConnection, tenant: str, key: str, request_hash: str
    ) -> uuid.UUID | None:
        inserted = (
            await conn.execute(
                pg_insert(idempotency_keys)
                .values(tenant_id=tenant, key=key, request_hash=request_hash)
                .on_conflict_do_nothing()
                .returning(idempotency_keys.c.key)
            )
        ).first()
        if inserted is not None:
            return None
        existing = (
            await conn.execute(
                select(idempotency_keys, (func.now() - idempotency_keys.c.created_at).label("age"))
                .where(idempotency_keys.c.tenant_id == tenant, idempotency_keys.c.key == key)
                .with_for_update()
            )
        ).one()
        if existing.age.total_seconds() > IDEMPOTENCY_WINDOW_S or existing.resource_id is None:
            await conn.execute(
                update(idempotency_keys)
                .where(idempotency_keys.c.tenant_id == tenant, idempotency_keys.c.key == key)
                .values(request_hash=request_hash, created_at=func.now(), resource_id=None, status_code=None)
            )
            return None
        if existing.request_hash != request_hash:
            raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
        resource_id: uuid.UUID = existing.resource_id
        return resource_id

    async def get(self, tenant: str, schedule_id: uuid.UUID) -> ScheduleRecord:
        async with self._engine.connect() as conn:
            row = await _live_row(conn, tenant, schedule_id)
        return _record(row)

    async def list(
        self, tenant: str, flt: ListFilter, *, limit: int, cursor: str | None
    ) -> tuple[list[ScheduleRecord], str | None]:
        query = filtered(_SELECT, tenant, flt)
        if cursor is not None:
            query = query.where(schedules.c.id > uuid.UUID(decode_cursor(cursor)))
        query = query.order_by(schedules.c.id).limit(limit + 1)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        records = [_record(r) for r in rows[:limit]]
        next_cursor = encode_cursor(str(records[-1].state.id)) if len(rows) > limit else None
        return records, next_cursor

    async def change(
        self,
        tenant: str,
        schedule_id: uuid.UUID,
        mutate: Callable[[ScheduleState], dict[str, Any]],
        *,
        if_match: str | None,
    ) -> ScheduleRecord:
        """Apply ``mutate`` (returns the changed fields) under the row lock, bump the version, emit the event."""
        now = utcnow()
        async with self._engine.begin() as conn:
            row = await _live_row(conn, tenant, schedule_id, for_update=True)
            current = _record(row)
            check_if_match(if_match, current.state.version)
            changes = mutate(current.state)
            state = current.state.model_copy(
                update={**changes, "version": current.state.version + 1, "updated_at": now}
            )
            state = ScheduleState.model_validate(state.model_dump())
            await _add_fire_rate(conn, self._settings, tenant, fire_rate(state) - row.fire_rate)
            await conn.execute(update(schedules).where(schedules.c.id == schedule_id).values(**_columns(state)))
            if state.status is ScheduleStatus.PAUSED and current.state.status is not ScheduleStatus.PAUSED:
                await self._publish_stops(conn, tenant, [(state.id, state.version)], state.status, now)
            elif state.status is ScheduleStatus.ACTIVE and current.state.status is ScheduleStatus.PAUSED:
                await conn.execute(_REBASE_STREAKS, {"ids": [state.id], "now": now})
            await self._publish_upsert(conn, state)
        self._on_commit()
        return ScheduleRecord(
            state=state, last_run_at=current.last_run_at, run_count=current.run_count, stats=current.stats
        )

    async def replace(
        self, tenant: str, schedule_id: uuid.UUID, definition: ScheduleDefinition, *, if_match: str | None
    ) -> ScheduleRecord:
        def mutate(state: ScheduleState) -> dict[str, Any]:
            changes: dict[str, Any] = dict(definition)
            if state.status is ScheduleStatus.COMPLETED:
                # An edit may give a finished schedule new fire times; the planner completes it again if not.
                changes["status"] = ScheduleStatus.ACTIVE
            return changes

        return await self.change(tenant, schedule_id, mutate, if_match=if_match)

    async def set_paused(
        self, tenant: str, schedule_id: uuid.UUID, paused: bool, *, if_match: str | None
    ) -> ScheduleRecord:
        def mutate(state: ScheduleState) -> dict[str, Any]:
            wanted_from = ScheduleStatus.ACTIVE if paused else ScheduleStatus.PAUSED
            if state.status is not wanted_from:
                verb = "pause" if paused else "resume"
                raise InvalidTransition(f"cannot {verb} a schedule that is {state.status.value}")
            return {"status": ScheduleStatus.PAUSED if paused else ScheduleStatus.ACTIVE, "paused_reason": None}

        return await self.change(tenant, schedule_id, mutate, if_match=if_match)

    async def delete(self, tenant: str, schedule_id: uuid.UUID, *, if_match: str | None) -> None:
        now = utcnow()
        async with self._engine.begin() as conn:
            row = await _live_row(conn, tenant, schedule_id, for_update=True)
            check_if_match(if_match, row.version)
            await self._delete_rows(conn, tenant, [row], now)
        self._on_commit()

    async def run_now(self, tenant: str, schedule_id: uuid.UUID) -> dict[str, Any]:
        """Record a queued run and ask the planner to fire it (through the outbox, like every change)."""
        now = utcnow()
        async with self._engine.begin() as conn:
            row = await _live_row(conn, tenant, schedule_id)
            state = _record(row).state
            data = RunNowCommandData(
                run_id=adhoc_run_id(),
                schedule_id=state.id,
                tenant_id=tenant,
                schedule_version=state.version,
                nominal_time=now,
                planned_time=now,
                trigger=Trigger.RUN_NOW,
                delivery=state.payload,
                retry_policy=state.retry_policy,
            )
            # The run history is the recorder's (from this run's run.due); the request answers until it has it.
            await conn.execute(
                insert(run_requests).values(
                    id=data.run_id,
                    schedule_id=state.id,
                    tenant_id=tenant,
                    trigger=Trigger.RUN_NOW.value,
                    requested_at=now,
                )
            )
            command = RunNowCommand(subject=str(state.id), tenant=tenant, time=now, data=data)
            await enqueue(conn, command, PLANNER_COMMANDS, key=str(state.id), aggregate_id=str(state.id), version=0)
        self._on_commit()
        return {
            "id": data.run_id,
            "schedule_id": state.id,
            "tenant_id": tenant,
            "scheduled_for": now,
            "planned_for": now,
            "status": RunStatus.QUEUED.value,
            "trigger": Trigger.RUN_NOW.value,
            "created_at": now,
            "updated_at": now,
            "finished_at": None,
            "attempts": [],
        }

    async def backfill(self, tenant: str, schedule_id: uuid.UUID, since: datetime, until: datetime) -> int:
        """Ask the planner to run every nominal time in [since, until] that has no run yet. Returns the count."""
        now = utcnow()
        async with self._engine.begin() as conn:
            row = await _live_row(conn, tenant, schedule_id)
            state = _record(row).state
            # max_runs counts planned fires only, so it does not bound a backfill.
            spec = dataclasses.replace(plan_spec(state, state.id, state.created_at), max_runs=None)
            limit = self._settings.backfill_max_runs
            nominals: list[datetime] = []
            for fire in iter_fires(spec, since - timedelta(milliseconds=1)):
                if fire.nominal > until:
                    break
                nominals.append(fire.nominal)
                if len(nominals) > limit:
                    raise InvalidSchedule("to", f"the range holds more than {limit} runs; backfill it in parts")
            ids = {planned_run_id(state.id, n): n for n in nominals}
            if ids:
                done = set((await conn.execute(select(runs.c.id).where(runs.c.id.in_(list(ids))))).scalars())
                nominals = [n for run_id, n in ids.items() if run_id not in done]
            if not nominals:
                return 0
            data = BackfillCommandData(schedule_id=state.id, tenant_id=tenant, nominal_times=nominals, requested_at=now)
            command = BackfillCommand(subject=str(state.id), tenant=tenant, time=now, data=data)
            await enqueue(conn, command, PLANNER_COMMANDS, key=str(state.id), aggregate_id=str(state.id), version=0)
        self._on_commit()
        return len(nominals)

    async def bulk(self, tenant: str, action: BulkAction, flt: ListFilter, *, dry_run: bool) -> tuple[int, int]:
        """Pause, resume or delete every live schedule ``flt`` matches, each as its own versioned change through
        the outbox, in one transaction. Returns (matched, changed); a dry run changes nothing."""
        limit = self._settings.bulk_max
        query = filtered(_SELECT, tenant, flt).order_by(schedules.c.id).limit(limit + 1)
        now = utcnow()
        async with self._engine.begin() as conn:
            # Locked in id order, as every other writer locks one row: bulk changes cannot deadlock each other.
            rows = (await conn.execute(query if dry_run else query.with_for_update(of=schedules))).all()
            if len(rows) > limit:
                raise InvalidSelector(
                    "selector",
                    f"the selector matches more than {limit} schedules (CHIME_BULK_MAX); narrow it",
                )
            wanted_from = {BulkAction.PAUSE: ScheduleStatus.ACTIVE, BulkAction.RESUME: ScheduleStatus.PAUSED}
            eligible = [
                r for r in rows if action is BulkAction.DELETE or r.effective_status == wanted_from[action].value
            ]
            if dry_run or not eligible:
                return len(rows), 0
            if action is BulkAction.DELETE:
                await self._delete_rows(conn, tenant, eligible, now)
            else:
                await self._set_status_rows(conn, tenant, eligible, action, now)
        self._on_commit()
        return len(rows), len(eligible)

    async def _set_status_rows(
        self,
        conn: AsyncConnection,
        tenant: str,
        rows: Sequence[Row[Any]],
        action: BulkAction,
        now: datetime,
        reason: str | None = None,
    ) -> None:
        status = ScheduleStatus.PAUSED if action is BulkAction.PAUSE else ScheduleStatus.ACTIVE
        changes = {"status": status, "updated_at": now, "paused_reason": reason}
        states = [_record(r).state.model_copy(update={**changes, "version": r.version + 1}) for r in rows]
        rates = [fire_rate(state) for state in states]
        await _add_fire_rate(conn, self._settings, tenant, sum(rates) - sum(r.fire_rate for r in rows))
        await conn.execute(
            _SET_STATUS,
            [
                {
                    "b_id": st.id,
                    "b_status": status.value,
                    "b_version": st.version,
                    "b_now": now,
                    "b_rate": rate,
                    "b_reason": reason,
                }
                for st, rate in zip(states, rates, strict=True)
            ],
        )
        if status is ScheduleStatus.PAUSED:
            await self._publish_stops(conn, tenant, [(st.id, st.version) for st in states], status, now)
        else:
            await conn.execute(_REBASE_STREAKS, {"ids": [st.id for st in states], "now": now})
        await self._publish_upserts(conn, tenant, states)

    async def _delete_rows(self, conn: AsyncConnection, tenant: str, rows: Sequence[Row[Any]], now: datetime) -> None:
        await conn.execute(
            _DELETE_ROW,
            [{"b_id": r.id, "b_version": r.version + 1, "b_now": now} for r in rows],
        )
        await conn.execute(
            update(tenants)
            .where(tenants.c.id == tenant)
            .values(schedule_count=func.greatest(0, tenants.c.schedule_count - len(rows)))
        )
        await _add_fire_rate(conn, self._settings, tenant, -sum(r.fire_rate for r in rows))
        stopped = [(r.id, r.version + 1) for r in rows]
        await self._publish_stops(conn, tenant, stopped, ScheduleStatus.DELETED, now)
        events = []
        for r in rows:
            data = ScheduleDeletedData(id=r.id, tenant_id=tenant, version=r.version + 1, deleted_at=now)
            event = ScheduleDeleted(subject=str(r.id), tenant=tenant, time=now, data=data)
            events.append((event, SCHEDULES, str(r.id), r.version + 1))
        await enqueue_many(conn, events)

    async def resync(self, tenant: str | None = None, batch: int = 500) -> int:
        """Publish every schedule that is not deleted again, as its current version (``chime resync``).

        For a broker that lost its data: the planner knows only what ``chime.schedules`` holds, and Postgres holds
        every definition. A planner that has a schedule's version already ignores the repeat, so running it on a
        healthy installation changes nothing. Batches of ``batch`` schedules, each in a transaction of its own, in
        id order; returns how many were queued in the outbox, which the API's relay publishes.
        """
        total = 0
        after: uuid.UUID | None = None
        while True:
            query = select(schedules).where(schedules.c.status != ScheduleStatus.DELETED.value)
            if tenant is not None:
                query = query.where(schedules.c.tenant_id == tenant)
            if after is not None:
                query = query.where(schedules.c.id > after)
            async with self._engine.begin() as conn:
                rows = (await conn.execute(query.order_by(schedules.c.id).limit(batch))).all()
                by_tenant: dict[str, list[ScheduleState]] = {}
                for row in rows:
                    state = _state(row)
                    by_tenant.setdefault(state.tenant_id, []).append(state)
                for owner, states in by_tenant.items():
                    await self._publish_upserts(conn, owner, states)
            if not rows:
                return total
            self._on_commit()
            total += len(rows)
            after = rows[-1].id

    async def apply_auto_pauses(self, limit: int = 100) -> tuple[int, int]:
        """Pause the schedules the recorder found failing past their ``auto_pause_after_failures``; how many
        requests were handled, and how many schedules paused.

        Each request is taken (and deleted) in the transaction that pauses its schedule, so a crash leaves it for
        the next round and two API replicas never apply the same one. A schedule that is no longer active (paused,
        deleted, or resumed and already paused again) is left as it is.
        """
        now = utcnow()
        async with self._engine.begin() as conn:
            taken = (await conn.execute(_TAKE_AUTO_PAUSES, {"limit": limit})).all()
            if not taken:
                return 0, 0
            ids = [r.schedule_id for r in taken]
            paused = 0
            rows = (
                await conn.execute(
                    _SELECT.where(schedules.c.id.in_(ids), schedules.c.status == ScheduleStatus.ACTIVE.value)
                    .order_by(schedules.c.id)
                    .with_for_update(of=schedules)
                )
            ).all()
            for row in rows:
                # Looked at again under the lock: a resume or a success since the request may have cleared it.
                counted = failures_toward_pause(
                    row.consecutive_failures or 0, row.last_success_at, row.auto_pause_base, row.auto_pause_base_at
                )
                threshold = row.auto_pause_after_failures
                if threshold is None or counted < threshold:
                    continue
                reason = f"auto: {counted} consecutive failures"
                await self._set_status_rows(conn, row.tenant_id, [row], BulkAction.PAUSE, now, reason)
                notice = ScheduleAutoPausedData(
                    schedule_id=row.id,
                    tenant_id=row.tenant_id,
                    name=row.name,
                    consecutive_failures=counted,
                    paused_reason=reason,
                    paused_at=now,
                )
                await conn.execute(
                    _NOTIFY_AUTO_PAUSED,
                    {"tenant": row.tenant_id, "subject": str(row.id), "data": notice.model_dump_json()},
                )
                paused += 1
                log.warning(
                    "schedule auto-paused after %d consecutive failures",
                    counted,
                    extra={"tenant": row.tenant_id, "schedule": str(row.id)},
                )
        self._on_commit()
        return len(taken), paused

    async def counts_by_status(self) -> dict[str, int]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(select(_STATUS, func.count()).select_from(_WITH_STATS).group_by(_STATUS))).all()
        return {status: count for status, count in rows}
