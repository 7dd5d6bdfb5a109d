"""Bring the local Kafka and Postgres up or down, and run a command with them (``make test``)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.devstack.kafka import REPO_ROOT, LocalKafka
from services.devstack.postgres import is_running as postgres_running
from services.devstack.postgres import start_postgres, stop_postgres

STATE_DIR = REPO_ROOT / ".chime"
PG_DIR = STATE_DIR / "postgres"
SECRETS_FILE = STATE_DIR / "dev-secrets.env"


@dataclass
class Stack:
    """What the local stack provides, and which parts this process started (and so must stop)."""

    env: dict[str, str] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)

    def down(self) -> None:
        if "postgres" in self.started:
            stop_postgres(PG_DIR)
        if "kafka" in self.started:
            LocalKafka().stop()
        self.started.clear()


def up(*, with_postgres: bool = True) -> Stack:
    """Start (or reuse) Kafka and Postgres, unless CHIME_KAFKA_BOOTSTRAP / CHIME_DATABASE_URL name external ones."""
    STATE_DIR.mkdir(exist_ok=True)
    stack = Stack()
    external_kafka = os.environ.get("CHIME_KAFKA_BOOTSTRAP")
    if external_kafka:
        stack.env["CHIME_KAFKA_BOOTSTRAP"] = external_kafka
    else:
        kafka = LocalKafka()
        if not kafka.is_running():
            print("starting Kafka on 127.0.0.1:9092 ...", file=sys.stderr)
            kafka.start()
            stack.started.append("kafka")
        stack.env["CHIME_KAFKA_BOOTSTRAP"] = kafka.bootstrap
    if with_postgres:
        external_db = os.environ.get("CHIME_DATABASE_URL")
        if external_db:
            stack.env["CHIME_DATABASE_URL"] = external_db
        else:
            was_running = postgres_running(PG_DIR)
            stack.env["CHIME_DATABASE_URL"] = start_postgres(PG_DIR)
            if not was_running:
                stack.started.append("postgres")
    return stack


def down_all() -> None:
    """``make stop``: stop the local broker and database, whoever started them."""
    stop_postgres(PG_DIR)
    LocalKafka().stop()


def dev_secrets() -> dict[str, str]:
    """Development secrets, generated once and kept under .chime/ so tokens survive restarts."""
    if SECRETS_FILE.exists():
        pairs = (line.split("=", 1) for line in SECRETS_FILE.read_text().splitlines() if "=" in line)
        return {k: v for k, v in pairs}
    values = {
        "CHIME_JWT_SECRET": secrets.token_urlsafe(32),
        "CHIME_MASTER_KEY": secrets.token_urlsafe(32),
    }
    STATE_DIR.mkdir(exist_ok=True)
    SECRETS_FILE.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    SECRETS_FILE.chmod(0o600)
    return values


def exec_with_stack(command: Sequence[str]) -> int:
    """Run ``command`` with the stack's settings in its environment; stop afterwards only what we started."""
    stack = up()
    try:
        env = {**os.environ, **stack.env}
        return subprocess.call(list(command), env=env)
    finally:
        stack.down()


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    path.chmod(0o600)
