"""Run the real ingest pipeline in-process until a topic's records are committed to a table."""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka import Producer
from pyiceberg.catalog import Catalog
from sqlalchemy import create_engine

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.ingest.service import Ingestor
from tableflow.schema.store import SchemaStore


def ingest_json(
    catalog: Catalog, kafka: dict[str, Any], topic: str, table: str, rows: int, data_dir: Any, timeout_s: float = 60
) -> None:
    """Produce ``rows`` JSON records ``{"id", "name"}`` to ``topic`` and ingest them into ``table``."""
    producer = Producer({"bootstrap.servers": kafka["bootstrap_servers"], "linger.ms": 5})
    for i in range(rows):
        producer.produce(topic, value=json.dumps({"id": i, "name": f"name-{i}"}).encode(), partition=0)
    producer.flush(30)
    settings = load_config(
        None,
        data_dir=data_dir,
        kafka=kafka,
        tables=[{"topic": topic, "table": table, "format": "json", "commit_interval_s": 0.5}],
    )
    store = SchemaStore(create_engine(f"sqlite:///{data_dir}/ingest-registry.db"))
    ingestor = Ingestor(settings, catalog, store)
    ingestor.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if om.table_offsets(catalog.load_table(table)).get(topic) == {0: rows}:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"{table} did not catch up with {topic} in {timeout_s}s")
    finally:
        ingestor.stop()
