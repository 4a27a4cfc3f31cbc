"""Every Avro type through both decode paths: the Arrow type and values of ``tableflow.schema.avro``.

Each case is one field of a record, written by confluent-kafka's AvroSerializer against the embedded registry
and decoded by the columnar path and the per-record path, which must agree exactly.
"""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

from tableflow.errors import SchemaError
from tableflow.ingest.decode import Decoded
from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.schema.avro import parse_avro
from tests.decode.conftest import Serialize

pytestmark = pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")  # the registry's parser

UTC = datetime.UTC
ITEM = {"type": "record", "name": "Item", "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int"}]}
ITEM_TYPE = pa.struct([("sku", pa.string()), ("qty", pa.int32())])
UUID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")


@dataclass(frozen=True)
class Case:
    avro: Any  # the field's Avro type
    values: list[Any]  # what the producer writes
    arrow: pa.DataType  # the column's type
    expected: list[Any] | None = None  # the column's values, as pa.array takes them; None: same as written


CASES: dict[str, Case] = {
    "null": Case("null", [None], pa.null()),
    "boolean": Case("boolean", [True, False], pa.bool_()),
    "int": Case("int", [-(2**31), 7], pa.int32()),
    "long": Case("long", [2**62, -1], pa.int64()),
    "float": Case("float", [1.5, -0.25], pa.float32()),
    "double": Case("double", [2.2250738585072014e-308, 1e300], pa.float64()),
    "bytes": Case("bytes", [b"\x00\xff", b""], pa.binary()),
    "string": Case("string", ["héllo ✓", ""], pa.string()),
    "decimal-bytes": Case(
        {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2},
        [decimal.Decimal("-12345678.90"), decimal.Decimal("0.01")],
        pa.decimal128(10, 2),
    ),
    "decimal-fixed": Case(
        {"type": "fixed", "name": "Money", "size": 8, "logicalType": "decimal", "precision": 12, "scale": 3},
        [decimal.Decimal("123456789.123")],
        pa.decimal128(12, 3),
    ),
    "decimal-wide": Case(
        {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 2},
        [decimal.Decimal("123456789012345678901234567890123456789012345678.90")],
        pa.decimal256(50, 2),
    ),
    "date": Case({"type": "int", "logicalType": "date"}, [datetime.date(2024, 2, 29)], pa.date32()),
    "time-millis": Case(
        {"type": "int", "logicalType": "time-millis"}, [datetime.time(23, 59, 59, 999000)], pa.time64("us")
    ),
    "time-micros": Case(
        {"type": "long", "logicalType": "time-micros"}, [datetime.time(1, 2, 3, 456789)], pa.time64("us")
    ),
    "timestamp-millis": Case(
        {"type": "long", "logicalType": "timestamp-millis"},
        [datetime.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)],
        pa.timestamp("us", tz="UTC"),
    ),
    "timestamp-micros": Case(
        {"type": "long", "logicalType": "timestamp-micros"},
        [datetime.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)],
        pa.timestamp("us", tz="UTC"),
    ),
    "timestamp-nanos": Case(
        {"type": "long", "logicalType": "timestamp-nanos"}, [1_700_000_000_123_456_789], pa.timestamp("ns", tz="UTC")
    ),
    "local-timestamp-millis": Case(
        {"type": "long", "logicalType": "local-timestamp-millis"},
        [datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)],
        pa.timestamp("us"),
    ),
    "local-timestamp-micros": Case(
        {"type": "long", "logicalType": "local-timestamp-micros"},
        [datetime.datetime(2024, 5, 6, 7, 8, 9, 123456)],
        pa.timestamp("us"),
    ),
    "uuid": Case({"type": "string", "logicalType": "uuid"}, [UUID, str(UUID)], pa.uuid(), [UUID, UUID]),
    "uuid-fixed": Case(
        {"type": "fixed", "name": "Id", "size": 16, "logicalType": "uuid"}, [UUID.bytes], pa.uuid(), [UUID]
    ),
    "duration": Case(
        {"type": "fixed", "name": "Span", "size": 12, "logicalType": "duration"}, [b"\x01" * 12], pa.binary(12)
    ),
    "unknown-logical-type": Case({"type": "long", "logicalType": "epoch-days"}, [19000], pa.int64()),
    "enum": Case({"type": "enum", "name": "Status", "symbols": ["NEW", "PAID"]}, ["PAID", "NEW"], pa.string()),
    "fixed": Case({"type": "fixed", "name": "Four", "size": 4}, [b"abcd"], pa.binary(4)),
    "record": Case(ITEM, [{"sku": "a", "qty": 1}], ITEM_TYPE),
    "array-of-records": Case(
        {"type": "array", "items": ITEM}, [[{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}], []], pa.list_(ITEM_TYPE)
    ),
    "array-of-nullable": Case({"type": "array", "items": ["null", "int"]}, [[1, None]], pa.list_(pa.int32())),
    "map": Case(
        {"type": "map", "values": "long"},
        [{"a": 1, "b": 2}, {}],
        pa.map_(pa.string(), pa.int64()),
        [[("a", 1), ("b", 2)], []],
    ),
    "map-of-records": Case(
        {"type": "map", "values": ITEM},
        [{"k": {"sku": "a", "qty": 1}}],
        pa.map_(pa.string(), ITEM_TYPE),
        [[("k", {"sku": "a", "qty": 1})]],
    ),
    "null-first-union": Case(["null", "string"], [None, "x"], pa.string()),
    "null-last-union": Case(["string", "null"], ["x", None], pa.string()),
    "nullable-record": Case(["null", ITEM], [{"sku": "a", "qty": 1}, None], ITEM_TYPE),
    "three-branch-union": Case(
        ["null", "int", "string"],
        [None, 5, "x"],
        pa.struct([("int", pa.int32()), ("string", pa.string())]),
        [None, {"int": 5, "string": None}, {"int": None, "string": "x"}],
    ),
    "union-of-records": Case(
        [ITEM, {"type": "record", "name": "Refund", "fields": [{"name": "amount", "type": "double"}]}],
        [{"sku": "a", "qty": 1}, {"amount": 2.5}],
        pa.struct([("Item", ITEM_TYPE), ("Refund", pa.struct([("amount", pa.float64())]))]),
        [{"Item": {"sku": "a", "qty": 1}, "Refund": None}, {"Item": None, "Refund": {"amount": 2.5}}],
    ),
    "union-of-int-and-long": Case(
        ["int", "long"],
        [5, 2**40],
        pa.struct([("int", pa.int32()), ("long", pa.int64())]),
        [{"int": 5, "long": None}, {"int": None, "long": 2**40}],
    ),
    "union-of-enum-and-string": Case(
        [{"type": "enum", "name": "Color", "symbols": ["RED"]}, "string"],
        ["RED", "teal"],
        pa.struct([("Color", pa.string()), ("string", pa.string())]),
        [{"Color": "RED", "string": None}, {"Color": None, "string": "teal"}],
    ),
    "union-in-array": Case(
        {"type": "array", "items": ["long", "string"]},
        [[1, "a"]],
        pa.list_(pa.struct([("long", pa.int64()), ("string", pa.string())])),
        [[{"long": 1, "string": None}, {"long": None, "string": "a"}]],
    ),
}


ROW_ONLY = {"null", "duration", "three-branch-union", "union-of-records", "union-of-int-and-long"}
ROW_ONLY |= {"union-of-enum-and-string", "union-in-array"}
"""Cases the columnar reader cannot read the way the table stores them: always decoded record by record."""


def _decode(decoder: AvroDecoder, values: list[bytes | None]) -> Decoded:
    decoded = decoder.decode(values)
    assert decoded.errors == []
    return decoded


@pytest.mark.parametrize("name", list(CASES))
def test_avro_type(
    name: str,
    avro_values: Serialize,
    columnar: AvroDecoder,
    per_record: AvroDecoder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case = CASES[name]
    schema = {"type": "record", "name": "Row", "fields": [{"name": "f", "type": case.avro}]}
    written = [{"f": value} for value in case.values]
    values: list[bytes | None] = [*avro_values(f"types-{name}", schema, written), None]

    by_columns, by_records = _decode(columnar, values), _decode(per_record, values)

    assert parse_avro(json.dumps(schema), name).columnar == (name not in ROW_ONLY)

    expected = pa.table({"f": pa.array(case.values if case.expected is None else case.expected, case.arrow)})
    for decoded in (by_columns, by_records):
        first, tombstones = decoded.parts
        assert first.table.schema == expected.schema
        assert first.table.equals(expected), f"{first.table.to_pylist()} != {expected.to_pylist()}"
        assert list(first.rows) == list(range(len(case.values)))
        assert first.schema_id is not None
        assert tombstones.schema_id is None and list(tombstones.rows) == [len(case.values)]
        assert tombstones.table.num_columns == 0 and tombstones.table.num_rows == 1
        assert all(field.nullable for field in first.table.schema)
    assert not [record for record in caplog.records if "columnar read" in record.getMessage()]


def test_a_bare_type_is_one_column_named_value(avro_values: Serialize, columnar: AvroDecoder) -> None:
    values: list[bytes | None] = list(avro_values("bare-string", "string", ["a", "b"]))

    (part,) = _decode(columnar, values).parts

    assert part.table.equals(pa.table({"value": pa.array(["a", "b"], pa.string())}))


def test_a_recursive_schema_is_refused_by_name(avro_values: Serialize, per_record: AvroDecoder) -> None:
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}
    with pytest.raises(SchemaError, match=r"writer schema id 7 is recursive: field next refers back to type Node"):
        parse_avro(
            '{"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]}',
            "writer schema id 7",
        )

    values: list[bytes | None] = list(avro_values("recursive", node, [{"next": {"next": None}}]))
    decoded = per_record.decode(values)

    assert decoded.parts == []
    (error,) = decoded.errors
    assert "is recursive" in str(error.error) and error.schema_id is not None
