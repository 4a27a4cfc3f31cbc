"""A real embedded registry for the decoder tests: producers' bytes come from confluent-kafka's serializers.

One registry (a SQLite file served by uvicorn) and one pair of Avro decoders per test module: starting the
columnar reader's worker process costs a few hundred milliseconds, so tests share them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.schema.store import SchemaStore
from tests.schema_registry.server import serve_registry

Serialize = Callable[[str, object, Sequence[Any]], list[bytes]]


def iceberg_table(tmp_path: Path, name: str, data: pa.Table) -> Table:
    """``data`` appended with pyiceberg to a new table ``decode.<name>`` of its type, in a SQLite catalog."""
    catalog = SqlCatalog("test", uri=f"sqlite:///{tmp_path / 'catalog.db'}", warehouse=f"file://{tmp_path}")
    catalog.create_namespace("decode")
    table = catalog.create_table(f"decode.{name}", schema=data.schema)
    table.append(data)
    return table


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SchemaStore]:
    engine = sa.create_engine(f"sqlite:///{tmp_path_factory.mktemp('registry') / 'catalog.db'}")
    yield SchemaStore(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def client(store: SchemaStore) -> Iterator[SchemaRegistryClient]:
    with serve_registry(store) as url:
        sr = SchemaRegistryClient({"url": url, "max.retries": 0})
        yield sr
        sr.close()


@pytest.fixture(scope="module")
def avro_values(client: SchemaRegistryClient) -> Serialize:
    """``(topic, schema, values)`` → the values as an AvroSerializer writes them for ``topic``."""

    def serialize(topic: str, schema: object, values: Sequence[Any]) -> list[bytes]:
        serializer = AvroSerializer(client, json.dumps(schema))
        context = SerializationContext(topic, MessageField.VALUE)
        return [serializer(value, context) for value in values]

    return serialize


@pytest.fixture(scope="module")
def json_schema_values(client: SchemaRegistryClient) -> Serialize:
    """``(topic, JSON Schema, values)`` → the values as a JSONSerializer writes them (Confluent framing)."""

    def serialize(topic: str, schema: object, values: Sequence[Any]) -> list[bytes]:
        serializer = JSONSerializer(json.dumps(schema), client)
        context = SerializationContext(topic, MessageField.VALUE)
        return [serializer(value, context) for value in values]

    return serialize


@pytest.fixture(scope="module")
def columnar(store: SchemaStore) -> Iterator[AvroDecoder]:
    """Takes the columnar path for every group it can (one record is enough)."""
    with AvroDecoder(store, columnar_min_rows=1) as decoder:
        yield decoder


@pytest.fixture(scope="module")
def per_record(store: SchemaStore) -> Iterator[AvroDecoder]:
    """Never takes the columnar path: fastavro, record by record."""
    with AvroDecoder(store, columnar_min_rows=2**62) as decoder:
        yield decoder
