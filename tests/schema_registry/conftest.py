"""The embedded registry on a real SQLite file, served by uvicorn at ``/schema-registry`` like the service."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient

from tableflow.schema.store import SchemaStore
from tests.schema_registry.server import serve_registry


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'catalog.db'}"


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> SchemaStore:
    return SchemaStore(engine)


@pytest.fixture
def registry_url(store: SchemaStore) -> Iterator[str]:
    with serve_registry(store) as url:
        yield url


@pytest.fixture
def client(registry_url: str) -> Iterator[SchemaRegistryClient]:
    sr = SchemaRegistryClient({"url": registry_url, "max.retries": 0})
    yield sr
    sr.close()
