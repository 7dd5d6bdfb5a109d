"""``chime migrate``: bring the database schema to the newest Alembic revision."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db.engine import create_engine
from shared.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser interpolates %
    return cfg


async def upgrade(engine: AsyncEngine, url: str, revision: str = "head") -> None:
    """Upgrade under an advisory lock, so replicas migrating at start-up do not race each other."""

    def _upgrade(connection: Connection) -> None:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.connect() as connection:
        await connection.exec_driver_sql("SELECT pg_advisory_lock(727465)")
        try:
            await connection.run_sync(_upgrade)
            await connection.commit()
        except BaseException:
            # A failed migration leaves the transaction aborted: roll it back so the unlock below can run and
            # the migration's own error is the one reported.
            await connection.rollback()
            raise
        finally:
            await connection.exec_driver_sql("SELECT pg_advisory_unlock(727465)")


async def migrate(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await upgrade(engine, settings.database_url)
    finally:
        await engine.dispose()


def main(settings: Settings) -> None:
    asyncio.run(migrate(settings))
