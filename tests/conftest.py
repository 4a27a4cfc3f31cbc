"""Fixtures that start real components: a Kafka-protocol broker, a catalog, the service's HTTP server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from tableflow.broker import EmbeddedBroker


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    """A Kafka bootstrap address: TABLEFLOW_TEST_BOOTSTRAP, else testcontainers' Kafka, else embedded Tansu."""
    given = os.environ.get("TABLEFLOW_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka:
            yield kafka.get_bootstrap_server()
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


@pytest.fixture
def make_topic(bootstrap: str) -> Iterator[object]:
    """Create a uniquely named topic per call; the name says which test made it."""
    admin = AdminClient({"bootstrap.servers": bootstrap})

    def create(partitions: int = 1, prefix: str = "t") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(timeout=30)
        return name

    yield create


@pytest.fixture
def kafka_settings(bootstrap: str) -> dict[str, object]:
    """The ``kafka`` settings section for tests: a short session so group joins and failover are quick."""
    return {
        "bootstrap_servers": bootstrap,
        "properties": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "tableflow-data"
    path.mkdir()
    return path
