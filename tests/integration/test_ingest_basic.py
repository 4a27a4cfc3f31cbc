"""Produce → table → query, in-process, against a real broker and the embedded SQLite catalog."""

from __future__ import annotations

import json
import time
from pathlib import Path

from confluent_kafka import Producer

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.ingest.service import Ingestor
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.store import SchemaStore


def _produce(bootstrap: str, topic: str, values: list[bytes], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i, value in enumerate(values):
        producer.produce(topic, value=value, key=str(i).encode(), partition=i % partitions, headers=[("h", b"1")])
    producer.flush(30)


def _wait_rows(catalog: object, identifier: str, count: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    rows = -1
    while time.monotonic() < deadline:
        try:
            table = catalog.load_table(identifier)  # type: ignore[attr-defined]
            rows = table.scan().to_arrow().num_rows
            if rows >= count:
                return int(rows)
        except Exception:
            pass
        time.sleep(0.5)
    return rows


def test_raw_topic_lands_exactly_once(
    bootstrap: str, make_topic: object, data_dir: Path, kafka_settings: dict[str, object]
) -> None:
    topic = make_topic(partitions=3)  # type: ignore[operator]
    settings = load_config(
        None,
        data_dir=data_dir,
        kafka=kafka_settings,
        tables=[{"topic": topic, "format": "raw", "commit_interval_s": 1}],
    )
    catalog = open_catalog(settings)
    ingestor = Ingestor(settings, catalog, SchemaStore(state_engine(settings, catalog)))
    ingestor.start()
    try:
        _produce(bootstrap, topic, [f"v{i}".encode() for i in range(300)], 3)
        assert _wait_rows(catalog, settings.tables[0].identifier, 300) == 300
    finally:
        ingestor.stop()
    raw = catalog.load_table(settings.tables[0].identifier)
    data = raw.scan().to_arrow()
    pairs = set(zip(data["_kafka_partition"].to_pylist(), data["_kafka_offset"].to_pylist(), strict=True))
    assert len(pairs) == 300 == data.num_rows
    assert sorted(v.decode() for v in data["_kafka_value"].to_pylist()) == sorted(f"v{i}" for i in range(300))
    assert data["_kafka_headers"][0].as_py() == [{"key": "h", "value": b"1"}]
    assert om.table_offsets(raw)[topic] == {0: 100, 1: 100, 2: 100}


def test_json_topic_widens_its_schema(
    bootstrap: str, make_topic: object, data_dir: Path, kafka_settings: dict[str, object]
) -> None:
    topic = make_topic(partitions=2)  # type: ignore[operator]
    settings = load_config(
        None,
        data_dir=data_dir,
        kafka=kafka_settings,
        tables=[{"topic": topic, "format": "json", "commit_interval_s": 1}],
    )
    catalog = open_catalog(settings)
    ingestor = Ingestor(settings, catalog, SchemaStore(state_engine(settings, catalog)))
    ingestor.start()
    try:
        docs = [json.dumps({"id": i, "name": f"n{i}", "nested": {"x": i}}).encode() for i in range(200)]
        docs += [json.dumps({"id": i, "extra": True}).encode() for i in range(200, 250)]
        _produce(bootstrap, topic, docs, 2)
        assert _wait_rows(catalog, settings.tables[0].identifier, 250) == 250
    finally:
        ingestor.stop()
    js = catalog.load_table(settings.tables[0].identifier).scan().to_arrow()
    assert {"id", "name", "nested", "extra"} <= set(js.column_names)
    assert sorted(js["id"].to_pylist()) == list(range(250))


def test_start_latest_skips_history_and_records_its_start(
    bootstrap: str, make_topic: object, data_dir: Path, kafka_settings: dict[str, object]
) -> None:
    topic = make_topic(partitions=1)  # type: ignore[operator]
    old = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "batch.num.messages": 1})
    for i in range(5):
        old.produce(topic, value=f"old{i}".encode())
        old.flush(10)
    settings = load_config(
        None,
        data_dir=data_dir,
        kafka=kafka_settings,
        tables=[{"topic": topic, "format": "raw", "commit_interval_s": 0.5, "start": "latest"}],
    )
    catalog = open_catalog(settings)
    ingestor = Ingestor(settings, catalog, SchemaStore(state_engine(settings, catalog)))
    ingestor.start()
    try:
        deadline = time.monotonic() + 30
        while ingestor.statuses()[0].state != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
        table = catalog.load_table(settings.tables[0].identifier)
        assert om.table_offsets(table) == {topic: {0: 5}}
        _produce(bootstrap, topic, [b"new"], 1)
        assert _wait_rows(catalog, settings.tables[0].identifier, 1) == 1
    finally:
        ingestor.stop()
    data = catalog.load_table(settings.tables[0].identifier).scan().to_arrow()
    assert data["_kafka_value"].to_pylist() == [b"new"]
