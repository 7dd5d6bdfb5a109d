"""``CHIME_TEST_BACKEND=containers``: Kafka and Postgres from testcontainers, where a container engine runs (a
laptop with Docker). The default backend is the embedded broker and database (``chime stack``), which need no
engine; see docs/decisions.md. Both give the tests the same two settings."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.e2e.stack import free_port

KAFKA_IMAGE = "apache/kafka:4.1.1"
POSTGRES_IMAGE = "postgres:17.6-bookworm"


@contextmanager
def containers() -> Iterator[dict[str, str]]:
    """CHIME_KAFKA_BOOTSTRAP and CHIME_DATABASE_URL of a one-node Kafka and a Postgres, removed afterwards."""
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    # The broker advertises the host port it is published on, so that port is chosen first and mapped 1:1.
    port = free_port()
    kafka = (
        DockerContainer(KAFKA_IMAGE)
        .with_bind_ports(port, port)
        .with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            KAFKA_LISTENERS=f"PLAINTEXT://:{port},CONTROLLER://:9093",
            KAFKA_ADVERTISED_LISTENERS=f"PLAINTEXT://127.0.0.1:{port}",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9093",
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
            KAFKA_GROUP_MIN_SESSION_TIMEOUT_MS="1000",
            KAFKA_AUTO_CREATE_TOPICS_ENABLE="false",
        )
    )
    postgres = PostgresContainer(POSTGRES_IMAGE, username="chime", password="chime", dbname="chime", driver="asyncpg")
    with kafka, postgres:
        wait_for_logs(kafka, "Kafka Server started", timeout=120)
        yield {
            "CHIME_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
            "CHIME_DATABASE_URL": postgres.get_connection_url(host="127.0.0.1"),
        }
