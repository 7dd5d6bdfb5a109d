"""Runtime settings, read from ``CHIME_*`` environment variables (and ``.chime/dev.env`` when present)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigurationError

DEV_ENV_FILE = Path(".chime") / "dev.env"
DEV_JWT_SECRET = "chime-development-jwt-secret-do-not-use-in-prod"  # noqa: S105 - refused in prod
DEV_MASTER_KEY = "chime-development-master-key-do-not-use-in-prod"  # noqa: S105 - refused in prod
PLACEHOLDER_SECRETS = frozenset({"", "change-me", DEV_JWT_SECRET, DEV_MASTER_KEY})


class Environment(StrEnum):
    DEV = "dev"
    PROD = "prod"


class Settings(BaseSettings):
    """Every setting Chime reads. Build it with :func:`load_settings`; nothing reads the environment at import."""

    model_config = SettingsConfigDict(
        env_prefix="CHIME_",
        env_file=DEV_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    env: Environment = Environment.DEV
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "console"

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/chime"
    database_pool_size: int = Field(default=10, ge=1)
    database_ssl: Literal["disable", "prefer", "require", "verify-full"] = "disable"

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1_000)
    topic_prefix: str = "chime."
    partitions: int = Field(default=12, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_jwks_url: str | None = None
    # An unknown ``kid`` fetches the key set again, at most once per this many seconds (a token naming a key the
    # provider just published waits that long at worst; random kids cannot make Chime hammer the provider).
    jwt_jwks_refresh_cooldown_seconds: float = Field(default=5.0, ge=0)
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    master_key: SecretStr = SecretStr(DEV_MASTER_KEY)
    key_rotation_grace_seconds: int = Field(default=86_400, ge=0)

    max_schedules_per_tenant: int = Field(default=10_000, ge=1)
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    max_fires_per_second_per_tenant: float = Field(default=1_000.0, gt=0)
    allow_private_targets: bool = False

    outbox_poll_interval_ms: int = Field(default=200, ge=10)
    outbox_batch_size: int = Field(default=500, ge=1)

    instance_id: str | None = Field(
        default=None, description="Static group membership id (the pod name); default: hostname and service."
    )
    ops_host: str = "127.0.0.1"
    planner_port: int = 8001
    executor_port: int = 8002
    recorder_port: int = 8003
    dlq_port: int = 8004
    planner_store: str = "rocksdb://"
    planner_data_dir: str = ".chime/planner"
    planner_lookahead_ms: int = Field(default=2_000, ge=0, le=10_000)
    # Parsed schedule entries the planner keeps in memory (about 4 KB each); the rest are read from its tables.
    planner_cache_entries: int = Field(default=20_000, ge=100)
    # Memory each RocksDB partition store of the planner may use for its write buffer and its block cache.
    planner_rocksdb_write_buffer_bytes: int = Field(default=2 * 1024 * 1024, ge=1024 * 1024)
    planner_rocksdb_block_cache_bytes: int = Field(default=2 * 1024 * 1024, ge=1024 * 1024)
    consumer_session_timeout_ms: int = Field(default=6_000, ge=1_000)
    # Readiness fails when a consumer has lag and has committed nothing for this long.
    consumer_stall_seconds: float = Field(default=60.0, gt=0)
    consumer_heartbeat_interval_ms: int = Field(default=1_000, ge=100)

    executor_concurrency: int = Field(default=200, ge=1)
    executor_tenant_share: float = Field(default=0.5, gt=0, le=1.0)
    executor_shutdown_grace_seconds: float = Field(default=20.0, ge=0)
    run_retention_days: int = Field(default=30, ge=1)
    backfill_max_runs: int = Field(default=1_000, ge=1)
    dlq_replay_per_second: float = Field(default=50.0, gt=0)
    dlq_bulk_replay_limit: int = Field(default=1_000, ge=1)

    @model_validator(mode="after")
    def _refuse_placeholders_in_prod(self) -> Settings:
        if self.env is Environment.PROD:
            for name in ("jwt_secret", "master_key"):
                value: SecretStr = getattr(self, name)
                if value.get_secret_value() in PLACEHOLDER_SECRETS or len(value.get_secret_value()) < 32:
                    raise ConfigurationError(f"CHIME_{name.upper()} must be set to a real secret in prod")
        return self


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment now; keyword overrides win (tests use them)."""
    return Settings(**overrides)  # type: ignore[arg-type]
