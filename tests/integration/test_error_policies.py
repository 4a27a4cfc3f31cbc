"""Records that cannot be decoded are never lost silently: dead-lettered once, skipped and counted, or suspended."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.ingest.service import Ingestor
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.store import SchemaStore

BAD = {3: b"{not json", 7: b"[1, 2, 3]", 11: b"\x00\x01garbage"}


def _values() -> list[bytes]:
    return [BAD.get(i, json.dumps({"id": i, "name": f"n{i}"}).encode()) for i in range(20)]


def _produce(bootstrap: str, topic: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value in _values():
        producer.produce(topic, value=value, partition=0)
    producer.flush(30)


def _ingest(
    bootstrap: str, topic: str, data_dir: Path, kafka: dict[str, Any], policy: str, until: Any
) -> tuple[Any, Ingestor]:
    settings = load_config(
        None,
        data_dir=data_dir,
        kafka=kafka,
        tables=[{"topic": topic, "format": "json", "commit_interval_s": 0.5, "on_error": policy}],
    )
    catalog = open_catalog(settings)
    ingestor = Ingestor(settings, catalog, SchemaStore(state_engine(settings, catalog)))
    ingestor.start()
    _produce(bootstrap, topic)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not until(catalog, ingestor):
        time.sleep(0.3)
    return catalog, ingestor


def _positions(catalog: Any, identifier: str, topic: str) -> dict[int, int]:
    try:
        return om.table_offsets(catalog.load_table(identifier)).get(topic, {})
    except Exception:
        return {}


def test_dlq_holds_exactly_the_bad_records(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic()
    identifier = f"kafka.{topic.replace('-', '_')}"
    catalog, ingestor = _ingest(
        bootstrap, topic, data_dir, kafka_settings, "dlq", lambda c, _: _positions(c, identifier, topic) == {0: 20}
    )
    ingestor.stop()
    rows = catalog.load_table(identifier).scan().to_arrow()
    assert sorted(rows["_kafka_offset"].to_pylist()) == [i for i in range(20) if i not in BAD]
    dead = catalog.load_table(f"{identifier}__dlq").scan().to_arrow()
    assert sorted(dead["_kafka_offset"].to_pylist()) == sorted(BAD)
    by_offset = dict(zip(dead["_kafka_offset"].to_pylist(), dead["_kafka_value"].to_pylist(), strict=True))
    assert by_offset == BAD
    assert all(dead["error_message"].to_pylist())
    assert ingestor.statuses()[0].dlq_records_total == len(BAD)


def test_skip_counts_and_moves_on(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic()
    identifier = f"kafka.{topic.replace('-', '_')}"
    catalog, ingestor = _ingest(
        bootstrap, topic, data_dir, kafka_settings, "skip", lambda c, _: _positions(c, identifier, topic) == {0: 20}
    )
    ingestor.stop()
    assert catalog.load_table(identifier).scan().to_arrow().num_rows == 20 - len(BAD)
    assert ingestor.statuses()[0].skipped_total == len(BAD)


def test_suspend_stops_at_the_exact_offset_and_resumes_there(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic()
    identifier = f"kafka.{topic.replace('-', '_')}"
    catalog, ingestor = _ingest(
        bootstrap, topic, data_dir, kafka_settings, "suspend", lambda _, i: i.statuses()[0].state == "suspended"
    )
    try:
        status = ingestor.statuses()[0]
        assert status.state == "suspended"
        assert status.last_error is not None and status.last_error.offset == 3
        assert _positions(catalog, identifier, topic) == {0: 3}
        assert catalog.load_table(identifier).scan().to_arrow().num_rows == 3
        ingestor.workers[identifier].resume()  # the bad record is still bad: it stops there again
        time.sleep(3)
        assert ingestor.statuses()[0].state == "suspended"
        assert _positions(catalog, identifier, topic) == {0: 3}
    finally:
        ingestor.stop()
