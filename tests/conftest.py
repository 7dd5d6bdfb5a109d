"""Test-session services: the real Kafka and Postgres, each test isolated by its own tenant and topics."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for kind in ("unit", "integration", "e2e"):
            if f"tests/{kind}/" in str(item.path).replace(os.sep, "/"):
                item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """CHIME_KAFKA_BOOTSTRAP and CHIME_DATABASE_URL: from the environment, from testcontainers
    (``CHIME_TEST_BACKEND=containers``), or the local stack started here."""
    if os.environ.get("CHIME_KAFKA_BOOTSTRAP") and os.environ.get("CHIME_DATABASE_URL"):
        yield {k: os.environ[k] for k in ("CHIME_KAFKA_BOOTSTRAP", "CHIME_DATABASE_URL")}
        return
    if os.environ.get("CHIME_TEST_BACKEND") == "containers":
        from tests.containers import containers

        with containers() as env:
            os.environ.update(env)  # the services the end-to-end tests start read them too
            yield env
        return
    from services.devstack.stack import up

    try:
        stack = up()
    except Exception as exc:  # noqa: BLE001 - turned into a clear failure, never a skip
        pytest.fail(
            "integration tests need Kafka and Postgres: set CHIME_KAFKA_BOOTSTRAP and CHIME_DATABASE_URL, "
            f"or let the local stack start (make test does): {exc}"
        )
    yield stack.env
    stack.down()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"
