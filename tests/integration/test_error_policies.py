"""Records that cannot be decoded are never lost silently: dead-lettered once, skipped and counted, or suspended."""

from __future__ import annotations

import datetime
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tableflow import offsets as om
from tableflow.config import load_config
from tableflow.ingest.service import Ingestor
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.store import SchemaStore
from tests.avro_ingest import avro_pipeline

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


TYPED = {  # a JSON Schema whose columns plain JSON inference cannot give: timestamptz, date, uuid, map
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "at": {"type": "string", "format": "date-time"},
        "day": {"type": "string", "format": "date"},
        "ref": {"type": "string", "format": "uuid"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "items": {"type": "array", "items": {"type": "string"}},  # a large list in the table's Arrow schema
    },
}
REF = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


@pytest.mark.timeout(120)
def test_plain_json_on_a_json_schema_table_keeps_going_and_loses_nothing(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    """A restarted worker reads a JSON-Schema table's column types from the table; plain JSON records then
    take them (strings parsed like framed values), and one carrying a map, which only framed records can
    fill, is dead-lettered: nothing stalls the table, nothing is lost."""
    topic = make_topic()
    table = {"topic": topic, "format": "json", "commit_interval_s": 0.5}
    framed = {"id": 0, "at": "2024-05-06T07:08:09Z", "day": "2024-02-29", "ref": REF, "tags": {"a": "b"}}
    with avro_pipeline(bootstrap, topic, data_dir, kafka_settings, [table]) as pipeline:
        pipeline.produce([(0, value) for value in pipeline.serialize(TYPED, [framed], "JSON")])
        pipeline.wait(lambda: pipeline.positions() == {0: 1}, "the framed record")

    plain = [
        {"id": 1, "at": "2024-05-06T09:08:09+02:00", "day": "2024-03-01", "ref": REF.upper(), "items": ["x"]},
        {"id": 2, "tags": {"a": "b"}},  # a map: only the framed record can fill it
        {"id": 3, "extra": "new column"},
    ]
    with avro_pipeline(bootstrap, topic, data_dir, kafka_settings, [table]) as pipeline:
        values = [json.dumps(value).encode() for value in plain]
        values += pipeline.serialize(TYPED, [{**framed, "id": 4}], "JSON")
        pipeline.produce([(0, value) for value in values])
        pipeline.wait(lambda: pipeline.positions() == {0: 5}, "the plain records")
        pipeline.wait(lambda: pipeline.ingestor.statuses()[0].dlq_records_total == 1, "the status")
        assert pipeline.ingestor.statuses()[0].errors_total == 0  # never retried a batch
        rows = pipeline.rows().select(["id", "at", "day", "ref", "tags", "items", "extra"]).to_pylist()
        dead = pipeline.rows(f"{pipeline.identifier}__dlq").to_pylist()

    at = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    ref = uuid.UUID(REF)
    day, tags = datetime.date(2024, 2, 29), [("a", "b")]
    assert rows == [
        {"id": 0, "at": at, "day": day, "ref": ref, "tags": tags, "items": None, "extra": None},
        {"id": 1, "at": at, "day": datetime.date(2024, 3, 1), "ref": ref, "tags": None, "items": ["x"], "extra": None},
        {"id": 3, "at": None, "day": None, "ref": None, "tags": None, "items": None, "extra": "new column"},
        {"id": 4, "at": at, "day": day, "ref": ref, "tags": tags, "items": None, "extra": None},
    ]
    assert [(row["_kafka_offset"], row["_kafka_value"]) for row in dead] == [(2, values[1])]
    assert "column tags is a map" in dead[0]["error_message"] and "JSONSerializer" in dead[0]["error_message"]
