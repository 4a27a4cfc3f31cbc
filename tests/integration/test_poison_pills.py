"""Poison pills among valid Avro records on several partitions: exactly they are set aside, nothing else moves.

The pills: random bytes, an unknown schema id, a truncated datum, a wrong magic byte, and a record written with a
schema the table cannot take (v5 turns the string field ``status`` into an int). The valid records come from
confluent-kafka's AvroSerializer; the records around each pill must land untouched.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tableflow.config import TableSettings
from tests.avro_ingest import AvroPipeline, avro_pipeline

ORDER = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "int"}, {"name": "status", "type": "string"}],
}
V5 = {**ORDER, "fields": [ORDER["fields"][0], {"name": "status", "type": "int"}]}  # type: ignore[index]
PARTITIONS = 3
PER_PARTITION = 20
INCOMPATIBLE = (1, 13)


def _poisoned(pipeline: AvroPipeline, pills: set[str]) -> tuple[list[tuple[int, bytes]], dict[tuple[int, int], str]]:
    """Valid orders on every partition with the chosen ``pills`` at known positions; each pill's position with
    a phrase its error must contain."""
    count = PARTITIONS * PER_PARTITION
    values = pipeline.serialize(ORDER, [{"id": i, "status": f"status of order {i}"} for i in range(count)])
    good = values[0]
    header, datum = good[:5], good[5:]
    catalog = {
        "random bytes": ((0, 3), b"\x7f" + random.Random(1).randbytes(40), "DecodeError: wrong magic byte 0x7f"),
        "unknown schema id": (
            (1, 5),
            b"\x00" + (2**31 - 1).to_bytes(4, "big") + datum,
            "DecodeError: schema id 2147483647 is not registered",
        ),
        "truncated": ((2, 7), header + datum[: len(datum) // 2], "DecodeError: Avro datum truncated"),
        "wrong magic byte": ((0, 11), b"\x01" + good[1:], "DecodeError: wrong magic byte 0x01"),
        "incompatible": (
            INCOMPATIBLE,
            pipeline.serialize(V5, [{"id": -1, "status": 3}])[0],
            "IncompatibleSchemaError: field status: the table's column is string, this writer's field is int",
        ),
    }
    chosen = {position: (value, phrase) for name, (position, value, phrase) in catalog.items() if name in pills}
    records = [(i % PARTITIONS, values[i]) for i in range(count)]  # offset i // PARTITIONS on partition i % 3
    for (partition, offset), (value, _) in chosen.items():
        records[offset * PARTITIONS + partition] = (partition, value)
    return records, {position: phrase for position, (_, phrase) in chosen.items()}


def _positions(data: pa.Table) -> list[tuple[int, int]]:
    return list(zip(data["_kafka_partition"].to_pylist(), data["_kafka_offset"].to_pylist(), strict=True))


def _assert_valid_neighbours_untouched(pipeline: AvroPipeline, bad: set[tuple[int, int]]) -> None:
    data = pipeline.rows()
    pairs = _positions(data)
    everything = [(p, o) for p in range(PARTITIONS) for o in range(PER_PARTITION)]
    assert pairs == [pair for pair in everything if pair not in bad]  # each once, in order
    for (partition, offset), order in zip(pairs, data.select(["id", "status"]).to_pylist(), strict=True):
        i = offset * PARTITIONS + partition
        assert order == {"id": i, "status": f"status of order {i}"}


@pytest.mark.timeout(120)
def test_exactly_the_pills_land_in_the_dlq_with_their_reasons(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic(partitions=PARTITIONS)
    table = {"topic": topic, "format": "avro", "commit_interval_s": 0.5, "on_error": "dlq"}
    everything = {p: PER_PARTITION for p in range(PARTITIONS)}
    with avro_pipeline(bootstrap, topic, data_dir, kafka_settings, [table]) as pipeline:
        records, reasons = _poisoned(
            pipeline, {"random bytes", "unknown schema id", "truncated", "wrong magic byte", "incompatible"}
        )
        pipeline.produce(records)
        pipeline.wait(lambda: pipeline.positions() == everything, "all records committed")
        dlq = f"{pipeline.identifier}__dlq"
        dead = pipeline.rows(dlq)
        assert pipeline.positions(dlq) == everything
        status = pipeline.ingestor.statuses()[0]  # counted once the worker has seen its commit land
        pipeline.wait(lambda: status.dlq_records_total == len(reasons), "dead letters counted", timeout_s=10)
        _assert_valid_neighbours_untouched(pipeline, set(reasons))

    assert sorted(_positions(dead)) == sorted(reasons)
    produced = {(p, i // PARTITIONS): value for i, (p, value) in enumerate(records)}
    for row in dead.to_pylist():
        position = (row["_kafka_partition"], row["_kafka_offset"])
        assert row["_kafka_value"] == produced[position]
        assert reasons[position] in f"{row['error_class']}: {row['error_message']}", row
    incompatible = next(row for row in dead.to_pylist() if row["error_class"] == "IncompatibleSchemaError")
    assert incompatible["schema_id"] is not None and "new field name" in incompatible["error_message"]


@pytest.mark.timeout(150)
def test_suspend_stops_at_the_incompatible_record_and_goes_on_once_told(
    bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic(partitions=PARTITIONS)
    settings = TableSettings(topic=topic, format="avro", commit_interval_s=0.5, on_error="suspend")
    partition, offset = INCOMPATIBLE
    with avro_pipeline(bootstrap, topic, data_dir, kafka_settings, []) as pipeline:
        ingestor = pipeline.ingestor
        ingestor.create(settings)  # an API table, whose policy can be changed while it runs
        records, _ = _poisoned(pipeline, {"incompatible"})
        pipeline.produce(records)

        def suspended_at_the_pill() -> bool:
            status = ingestor.statuses()[0]
            error = status.last_error
            return status.state == "suspended" and error is not None and (error.partition, error.offset) == INCOMPATIBLE

        pipeline.wait(suspended_at_the_pill, "suspended at the incompatible record")
        error = ingestor.statuses()[0].last_error
        assert error is not None and "field status: the table's column is string" in error.message
        assert pipeline.positions()[partition] == offset  # everything before it committed, nothing after

        ingestor.resume(settings.identifier)  # it is read again, and stops the table again, at the same place
        pipeline.wait(suspended_at_the_pill, "suspended again after resume")
        assert pipeline.positions()[partition] == offset

        ingestor.update(settings.identifier, {"on_error": "dlq"})  # the operator's way past it
        everything = {p: PER_PARTITION for p in range(PARTITIONS)}
        pipeline.wait(lambda: pipeline.positions() == everything, "all records committed after the change")
        dead = pipeline.rows(f"{settings.identifier}__dlq")
        assert _positions(dead) == [INCOMPATIBLE]
        assert dead["error_class"].to_pylist() == ["IncompatibleSchemaError"]
        _assert_valid_neighbours_untouched(pipeline, {INCOMPATIBLE})
