"""The real ingest pipeline on an Avro (or JSON Schema) topic, fed by confluent-kafka's serializers through the
embedded registry.

The Ingestor reads writer schemas from the same store the registry serves over HTTP, as ``tableflow serve``
does, so producers and the pipeline share schema ids.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.ingest.service import Ingestor
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.store import SchemaStore
from tests.schema_registry.server import serve_registry


@dataclass
class AvroPipeline:
    bootstrap: str
    topic: str
    identifier: str
    catalog: Catalog
    registry: SchemaRegistryClient
    ingestor: Ingestor

    def serialize(self, schema: dict[str, Any], values: Sequence[Any], schema_type: str = "AVRO") -> list[bytes]:
        """``values`` as AvroSerializer (JSONSerializer for ``schema_type`` JSON) writes them with ``schema``
        (registered under the topic's subject)."""
        text = json.dumps(schema)
        serializer = (
            JSONSerializer(text, self.registry) if schema_type == "JSON" else AvroSerializer(self.registry, text)
        )
        context = SerializationContext(self.topic, MessageField.VALUE)
        return [serializer(value, context) for value in values]

    def produce(self, records: Sequence[tuple[int, bytes]], keys: Sequence[bytes] | None = None) -> None:
        """(partition, value) pairs, in order; ``keys``, when given, one per record."""
        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        for index, (partition, value) in enumerate(records):
            producer.produce(self.topic, value=value, key=None if keys is None else keys[index], partition=partition)
        assert producer.flush(30) == 0

    def positions(self, identifier: str | None = None) -> dict[int, int]:
        """The topic's positions as the table (or the dead-letter table) records them; {} before it exists."""
        try:
            table = self.catalog.load_table(identifier or self.identifier)
        except NoSuchTableError:
            return {}
        return om.table_offsets(table).get(self.topic, {})

    def wait(self, done: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: not reached in {timeout_s}s (positions {self.positions()})")
            time.sleep(0.2)

    def rows(self, identifier: str | None = None) -> pa.Table:
        data = self.catalog.load_table(identifier or self.identifier).scan().to_arrow()
        return data.sort_by([("_kafka_partition", "ascending"), ("_kafka_offset", "ascending")])


@contextmanager
def avro_pipeline(
    bootstrap: str, topic: str, data_dir: Path, kafka: dict[str, Any], tables: list[dict[str, Any]]
) -> Iterator[AvroPipeline]:
    """An Ingestor running ``tables`` (config-file tables; pass [] and use ``ingestor.create`` for API ones),
    the registry served over HTTP; the topic's subject takes any schema (compatibility NONE), so tests can
    produce schema changes the table must refuse."""
    settings = load_config(None, data_dir=data_dir, kafka=kafka, tables=tables)
    catalog = open_catalog(settings)
    store = SchemaStore(state_engine(settings, catalog))
    with serve_registry(store) as url:
        registry = SchemaRegistryClient({"url": url, "max.retries": 0})
        registry.set_compatibility(f"{topic}-value", "NONE")
        ingestor = Ingestor(settings, catalog, store)
        identifier = load_config(None, tables=[{"topic": topic}]).tables[0].identifier
        ingestor.start()
        try:
            yield AvroPipeline(bootstrap, topic, identifier, catalog, registry, ingestor)
        finally:
            ingestor.stop()
            registry.close()
