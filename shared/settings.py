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

    env: Environment = Field(
        default=Environment.DEV, description="`dev` or `prod`; prod refuses placeholder and short secrets"
    )
    log_level: str = Field(default="INFO", description="log level: DEBUG, INFO, WARNING, ERROR")
    log_format: Literal["json", "console"] = Field(
        default="console", description="`json` (one object per line) or `console`"
    )

    database_url: str = Field(
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/chime",
        description="SQLAlchemy URL of the Postgres database (asyncpg driver)",
    )
    database_pool_size: int = Field(
        default=20,
        ge=1,
        description="connections each process may open to Postgres and keeps open once opened; a request beyond them"
        " waits for one",
    )
    database_ssl: Literal["disable", "prefer", "require", "verify-full"] = Field(
        default="disable", description="TLS to Postgres: `disable`, `prefer`, `require` or `verify-full`"
    )

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`"
    )
    kafka_sasl_mechanism: str | None = Field(
        default=None, description="SASL mechanism, e.g. `SCRAM-SHA-512` or `PLAIN`"
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="SASL password")
    kafka_ssl_cafile: str | None = Field(
        default=None, description="CA bundle (PEM) that signs the brokers' certificates"
    )
    kafka_request_timeout_ms: int = Field(default=10_000, ge=1_000, description="Kafka request timeout")
    topic_prefix: str = Field(default="chime.", description="prefix of every topic and consumer group")
    partitions: int = Field(
        default=12,
        ge=1,
        description="partitions per topic `chime topics create` makes: the most replicas of a service that share work",
    )
    replication_factor: int = Field(default=1, ge=1, description="replication factor of the topics it makes")

    api_host: str = Field(default="127.0.0.1", description="address the API listens on")
    api_port: int = Field(default=8000, description="port the API listens on")
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="API processes sharing the port; more than one uses more cores of one host "
        "(each serves its own `/metrics`, so on Kubernetes keep 1 and add replicas)",
    )
    jwt_secret: SecretStr = Field(default=SecretStr(DEV_JWT_SECRET), description="HS256 key that signs tokens")
    jwt_jwks_url: str | None = Field(
        default=None, description="JWKS URL of an identity provider; tokens are then RS256/ES256 from its key set"
    )
    # An unknown ``kid`` fetches the key set again, at most once per this many seconds (a token naming a key the
    # provider just published waits that long at worst; random kids cannot make Chime hammer the provider).
    jwt_jwks_refresh_cooldown_seconds: float = Field(
        default=5.0, ge=0, description="least time between two fetches of the key set for an unknown key id"
    )
    jwt_issuer: str | None = Field(default=None, description="required `iss` of tokens, when set")
    jwt_audience: str | None = Field(default=None, description="required `aud` of tokens, when set")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer the console signs in with (its discovery document's base)"
    )
    oidc_client_id: str | None = Field(default=None, description="the console's OIDC client id")
    oidc_client_secret: SecretStr | None = Field(
        default=None, description="the console's OIDC client secret (none for a public client with PKCE only)"
    )
    oidc_scopes: str = Field(default="openid", description="scopes the console asks the OIDC provider for")
    oidc_token: str = Field(
        default="access_token",
        pattern="^(access_token|id_token)$",
        description="which token of the provider's answer the console uses as the API's bearer token",
    )
    master_key: SecretStr = Field(
        default=SecretStr(DEV_MASTER_KEY), description="key that encrypts signing secrets and webhook headers at rest"
    )
    key_rotation_grace_seconds: int = Field(
        default=86_400, ge=0, description="how long a rotated-out signing secret still signs calls beside the new one"
    )

    max_schedules_per_tenant: int = Field(default=10_000, ge=1, description="schedules one tenant may have")
    rate_limit_per_second: float = Field(
        default=100.0, gt=0, description="API requests per second per tenant, across all API replicas"
    )
    max_fires_per_second_per_tenant: float = Field(
        default=1_000.0, gt=0, description="planned fires per second one tenant's schedules may add up to"
    )
    run_now_per_minute: float = Field(
        default=60.0, gt=0, description="run-now requests per minute per tenant, across all API replicas"
    )
    replays_per_minute: float = Field(
        default=60.0, gt=0, description="DLQ replay requests (one entry or bulk) per minute per tenant, across replicas"
    )
    allow_private_targets: bool = Field(
        default=False, description="allow webhook targets on loopback and private networks (development)"
    )

    outbox_poll_interval_ms: int = Field(
        default=200, ge=10, description="how often the API's outbox relay looks for changes when idle"
    )
    outbox_batch_size: int = Field(default=500, ge=1, description="changes the relay publishes per round")

    instance_id: str | None = Field(
        default=None, description="static group membership id (the pod name); default: host name and service"
    )
    ops_host: str = Field(default="127.0.0.1", description="address of the services' `/health` and `/metrics`")
    planner_port: int = Field(default=8001, description="the planner's operations port")
    executor_port: int = Field(default=8002, description="the executor's operations port")
    recorder_port: int = Field(default=8003, description="the recorder's operations port")
    dlq_port: int = Field(default=8004, description="the dead-letter service's operations port")
    planner_store: str = Field(default="rocksdb://", description="Faust table store: `rocksdb://` or `memory://`")
    planner_data_dir: str = Field(default=".chime/planner", description="where the planner keeps its table stores")
    planner_lookahead_ms: int = Field(
        default=5_000, ge=0, le=10_000, description="how early a run is announced to executors before its time"
    )
    # Parsed schedule entries the planner keeps in memory (about 4 KB each); the rest are read from its tables.
    # 40,000 holds every schedule of a planner firing 4,000 times a second at a 10 s cadence, for about 170 MB.
    planner_cache_entries: int = Field(
        default=40_000, ge=100, description="parsed schedules a planner keeps in memory (about 4 KB each)"
    )
    # Memory each RocksDB partition store of the planner may use for its write buffer and its block cache.
    planner_rocksdb_write_buffer_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024 * 1024, description="write buffer of each RocksDB partition store"
    )
    planner_rocksdb_block_cache_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024 * 1024, description="block cache of each RocksDB partition store"
    )
    consumer_session_timeout_ms: int = Field(
        default=6_000, ge=1_000, description="Kafka group session timeout: how soon a dead consumer's partitions move"
    )
    # Readiness fails when a consumer has lag and has committed nothing for this long.
    consumer_stall_seconds: float = Field(
        default=60.0, gt=0, description="readiness fails when a consumer has lag and committed nothing for this long"
    )
    consumer_heartbeat_interval_ms: int = Field(default=1_000, ge=100, description="Kafka group heartbeat interval")

    executor_concurrency: int = Field(default=200, ge=1, description="webhook calls one executor makes at once")
    executor_tenant_share: float = Field(
        default=0.5, gt=0, le=1.0, description="largest share of an executor's calls one tenant may hold"
    )
    default_flow_concurrency: int = Field(
        default=100, ge=1, description="calls in flight at once per flow (receiver) without a limit of its own"
    )
    executor_shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, description="how long a stopping executor lets calls in flight finish"
    )
    run_retention_days: int = Field(default=30, ge=1, description="days of run history the recorder keeps")
    backfill_max_runs: int = Field(default=1_000, ge=1, description="runs one backfill request may create")
    bulk_max: int = Field(
        default=10_000, ge=1, description="schedules one bulk pause, resume or delete may change (422 beyond)"
    )
    dlq_replay_per_second: float = Field(default=50.0, gt=0, description="pace of DLQ replays, runs per second")
    dlq_bulk_replay_limit: int = Field(default=1_000, ge=1, description="dead runs one bulk replay may take")

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
