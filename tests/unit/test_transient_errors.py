"""Which failures a consumer waits out (the whole batch again) and which it blames on a record (quarantine)."""

from __future__ import annotations

import pytest
from asyncpg import exceptions as pg_errors
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi
from sqlalchemy.exc import DBAPIError

from shared.consumer_runtime import is_transient


def _wrapped(error: Exception) -> DBAPIError:
    adapted = AsyncAdapt_asyncpg_dbapi.Error(str(error), error)
    return DBAPIError.instance("INSERT ...", {}, adapted, AsyncAdapt_asyncpg_dbapi.Error)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (pg_errors.DeadlockDetectedError("deadlock detected"), True),
        (pg_errors.SerializationError("could not serialize access"), True),
        (pg_errors.ForeignKeyViolationError("violates foreign key constraint"), False),
        (pg_errors.UniqueViolationError("duplicate key"), False),
    ],
)
def test_postgres_errors(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient
    assert is_transient(_wrapped(error)) is transient


def test_a_bad_value_is_the_record_s_fault() -> None:
    assert is_transient(pg_errors.CannotConnectNowError("the database system is starting up"))
    assert not is_transient(ValueError("not a run"))
    assert is_transient(ConnectionRefusedError())
