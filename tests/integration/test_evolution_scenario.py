"""A topic whose producers move through four writer schemas while older ones keep writing, end to end, in Avro
and in JSON Schema.

v1 → v2 (adds an optional nested record) → v3 (qty int → long; in JSON Schema a bounded integer, int32, becomes an
unbounded one, int64) → v4 (drops a field), produced with confluent-kafka's AvroSerializer or JSONSerializer,
interleaved across 3 partitions and several commits, through the real worker into the table. Keys are
``key-<id>`` strings; the JSON table also decodes them (``key_format: string``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.schema import index_by_name

from tests.avro_ingest import AvroPipeline, avro_pipeline
from tests.duck import iceberg_connection

PARTITIONS = 3
PHASES = [(1, 2), (2, 3, 1), (4, 3, 1, 2)]  # versions producing in each phase, taking turns on every partition
PER_PHASE = 90


@dataclass(frozen=True)
class Format:
    """What differs between the formats: the writer schemas, the table's settings, and the types and extra
    columns the table gets from them."""

    schema_type: str  # the registry's: AVRO or JSON
    versions: dict[int, dict[str, Any]]  # the writer schema of each version
    table: dict[str, Any]
    id_type: str
    extra: dict[str, str] = field(default_factory=dict)  # extra column → its value for record i ({i} filled in)


_ADDRESS = {
    "type": "record",
    "name": "Address",
    "fields": [{"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "string"], "default": None}],
}
_AVRO_V1 = [{"name": "id", "type": "int"}, {"name": "customer", "type": "string"}, {"name": "qty", "type": "int"}]
_AVRO_V2 = [*_AVRO_V1, {"name": "shipping", "type": ["null", _ADDRESS], "default": None}]
_AVRO_V3 = [*_AVRO_V2[:2], {"name": "qty", "type": "long"}, _AVRO_V2[3]]
_AVRO_V4 = [_AVRO_V3[0], *_AVRO_V3[2:]]
AVRO = Format(
    "AVRO",
    {
        version: {"type": "record", "name": "Order", "fields": fields}
        for version, fields in enumerate([_AVRO_V1, _AVRO_V2, _AVRO_V3, _AVRO_V4], start=1)
    },
    {"format": "avro"},
    "int",
)

_SHIPPING = {
    "anyOf": [
        {"type": "null"},
        {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}}},
    ]
}
_BOUNDED = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
_JSON_V1 = {"id": {"type": "integer"}, "customer": {"type": "string"}, "qty": _BOUNDED}
_JSON_V2 = {**_JSON_V1, "shipping": _SHIPPING}
_JSON_V3 = {**_JSON_V2, "qty": {"type": "integer"}}
_JSON_V4 = {name: schema for name, schema in _JSON_V3.items() if name != "customer"}
JSON_SCHEMA = Format(
    "JSON",
    {
        version: {"type": "object", "properties": properties}
        for version, properties in enumerate([_JSON_V1, _JSON_V2, _JSON_V3, _JSON_V4], start=1)
    },
    {"format": "json", "key_format": "string"},
    "long",
    {"_kafka_key_decoded": "key-{i}"},
)


def _value(version: int, i: int) -> dict[str, Any]:
    """Record ``i`` as a producer on ``version`` writes it."""
    value: dict[str, Any] = {"id": i, "customer": f"c{i}", "qty": i if version < 3 else 2**33 + i}
    if version >= 2:
        value["shipping"] = {"city": f"city{i}", "zip": None if i % 2 else f"{i:04d}"}
    if version == 4:
        del value["customer"]
    return value


def _expected(fmt: Format, version: int, i: int) -> dict[str, Any]:
    """Record ``i`` as the table holds it: every column, null where its version lacks the field."""
    extra = {column: value.format(i=i) for column, value in fmt.extra.items()}
    return {"customer": None, "shipping": None, **_value(version, i), **extra}


def _produce_phase(pipeline: AvroPipeline, fmt: Format, phase: int, versions: tuple[int, ...]) -> dict[int, int]:
    """Produce one phase; returns each record's version by id."""
    first = phase * PER_PHASE
    plan = {i: versions[(i // PARTITIONS) % len(versions)] for i in range(first, first + PER_PHASE)}
    records: list[tuple[int, bytes]] = []
    for version in versions:
        ids = [i for i, v in plan.items() if v == version]
        values = pipeline.serialize(fmt.versions[version], [_value(version, i) for i in ids], fmt.schema_type)
        records += zip(ids, values, strict=True)
    records.sort()
    pipeline.produce([(i % PARTITIONS, value) for i, value in records], [f"key-{i}".encode() for i, _ in records])
    return plan


@pytest.mark.timeout(180)
@pytest.mark.parametrize("fmt", [AVRO, JSON_SCHEMA], ids=["avro", "json-schema"])
def test_four_writer_versions_interleaved_land_whole(
    fmt: Format, bootstrap: str, make_topic: Any, data_dir: Path, kafka_settings: dict[str, Any]
) -> None:
    topic = make_topic(partitions=PARTITIONS)
    table = {"topic": topic, **fmt.table, "commit_interval_s": 0.5}
    versions: dict[int, int] = {}
    ids: dict[str, int] = {}
    with avro_pipeline(bootstrap, topic, data_dir, kafka_settings, [table]) as pipeline:
        for phase, phase_versions in enumerate(PHASES):
            versions |= _produce_phase(pipeline, fmt, phase, phase_versions)
            produced = len(versions)
            pipeline.wait(lambda: sum(pipeline.positions().values()) == produced, f"phase {phase}")  # noqa: B023
            if phase == 0:
                schema = pipeline.catalog.load_table(pipeline.identifier).schema()
                ids = dict(index_by_name(schema).items())
                assert str(schema.find_type("qty")) == "int"  # v1/v2's int (in JSON Schema, a bounded integer)
        status = pipeline.ingestor.statuses()[0]
        assert status.errors_total == 0 and status.dlq_records_total == 0
        iceberg = pipeline.catalog.load_table(pipeline.identifier)
        data = pipeline.rows()

    assert len(iceberg.metadata.snapshots) >= len(PHASES)
    schema = iceberg.schema()
    assert {path: field_id for path, field_id in index_by_name(schema).items() if path in ids} == ids  # stable ids
    assert {"shipping.city", "shipping.zip", "customer", *fmt.extra} <= set(ids)  # v2's nested record: phase 0
    assert str(schema.find_type("qty")) == "long" and str(schema.find_type("id")) == fmt.id_type
    assert all(not schema.find_field(name).required for name in ("id", "customer", "qty", "shipping"))

    pairs = list(zip(data["_kafka_partition"].to_pylist(), data["_kafka_offset"].to_pylist(), strict=True))
    counts = {p: sum(1 for i in versions if i % PARTITIONS == p) for p in range(PARTITIONS)}
    assert pairs == [(p, o) for p in range(PARTITIONS) for o in range(counts[p])]  # each exactly once
    values = data.select(["id", "customer", "qty", "shipping", *fmt.extra]).to_pylist()
    assert sorted(values, key=lambda row: row["id"]) == [_expected(fmt, versions[i], i) for i in sorted(versions)]
    assert data["_kafka_key"].to_pylist() == [f"key-{i}".encode() for i in data["id"].to_pylist()]  # raw bytes kept

    con = iceberg_connection()
    rows, distinct, qty, cities, customers = con.execute(
        "SELECT count(*), count(DISTINCT id), sum(qty), count(shipping.city), count(customer) "
        f"FROM iceberg_scan('{iceberg.metadata_location}')"
    ).fetchone()  # type: ignore[misc]
    assert rows == distinct == len(versions)
    assert qty == sum(_value(v, i)["qty"] for i, v in versions.items())
    assert cities == sum(1 for v in versions.values() if v >= 2)
    assert customers == sum(1 for v in versions.values() if v != 4)
