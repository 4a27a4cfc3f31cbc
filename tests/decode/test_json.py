"""Schemaless JSON: bulk reads, stable types across batches, exactly the bad records as errors."""

from __future__ import annotations

import datetime
import json
import random
import uuid

import pyarrow as pa
from pyiceberg.schema import Schema
from pyiceberg.types import (
    DateType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from tableflow.ingest.decode.json import JsonDecoder
from tests.decode.conftest import Serialize
from tests.decode.orders import as_json, order


def _lines(*objects: object) -> list[bytes | None]:
    return [json.dumps(value).encode() for value in objects]


def test_objects_become_columns_and_new_fields_appear() -> None:
    decoder = JsonDecoder()

    first = decoder.decode(_lines({"id": 1, "name": "a"}, {"id": 2, "tags": ["x"]}))
    second = decoder.decode(_lines({"id": 3, "address": {"city": "Oslo"}}))

    (part,) = first.parts
    assert first.errors == [] and list(part.rows) == [0, 1] and part.schema_id is None
    assert part.table.to_pylist() == [{"id": 1, "name": "a", "tags": None}, {"id": 2, "name": None, "tags": ["x"]}]
    assert second.parts[0].table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("name", pa.string()),
            ("tags", pa.list_(pa.string())),
            ("address", pa.struct([("city", pa.string())])),
        ]
    )


def test_the_known_schema_keeps_types_stable() -> None:
    decoder = JsonDecoder(pa.schema([("amount", pa.float64()), ("code", pa.string())]))

    decoded = decoder.decode(_lines({"amount": 1, "code": "7"}, {"amount": 2.5, "code": "x", "extra": True}))

    assert decoded.errors == []
    assert decoded.parts[0].table.to_pylist() == [
        {"amount": 1.0, "code": "7", "extra": None},
        {"amount": 2.5, "code": "x", "extra": True},
    ]
    assert decoder.known_schema == pa.schema([("amount", pa.float64()), ("code", pa.string()), ("extra", pa.bool_())])


def test_a_type_learned_in_one_batch_holds_in_the_next() -> None:
    decoder = JsonDecoder()
    decoder.decode(_lines({"n": 1}))

    decoded = decoder.decode(_lines({"n": 2}, {"n": "three"}, {"n": 4}))

    (error,) = decoded.errors
    assert error.row == 1 and "does not fit the table's columns" in str(error.error)
    assert decoded.parts[0].table.column("n").to_pylist() == [2, 4]


def test_exactly_the_bad_values_fail() -> None:
    values: list[bytes | None] = [
        b'{"id": 1, "price": 1}',
        b"{not json",
        b"[1, 2]",
        b'"a string"',
        b"",
        b'{"id": "two"}',  # the id was a number first
        None,  # tombstone
        b'{"id": 3}{"id": 4}',  # two objects in one value
        b'{"id": 5, "price": 2.5}',  # int and double in one batch: double
        b"\xff\xfe{}",  # not UTF-8
    ]

    decoded = JsonDecoder().decode(values)

    reasons = {error.row: str(error.error) for error in decoded.errors}
    assert reasons.keys() == {1, 2, 3, 4, 5, 7, 9}
    assert "invalid JSON" in reasons[1] and "invalid JSON" in reasons[7] and "invalid JSON" in reasons[9]
    assert "is a JSON array, not an object" in reasons[2] and "is a JSON string" in reasons[3]
    assert "empty value" in reasons[4]
    assert "changed from number to string" in reasons[5]
    (part,) = decoded.parts
    assert list(part.rows) == [0, 6, 8]
    assert part.table.to_pylist() == [{"id": 1, "price": 1.0}, {"id": None, "price": None}, {"id": 5, "price": 2.5}]


def test_pretty_printed_json_and_timestamps_that_stay_strings() -> None:
    pretty = json.dumps({"at": "2024-01-01T00:00:00Z", "day": "2024-01-01", "n": {"x": 1}}, indent=2).encode()

    decoded = JsonDecoder().decode([pretty, pretty.replace(b"\n", b"\r\n")])

    assert decoded.errors == []
    table = decoded.parts[0].table
    assert table.schema == pa.schema([("at", pa.string()), ("day", pa.string()), ("n", pa.struct([("x", pa.int64())]))])
    assert table.column("at").to_pylist() == ["2024-01-01T00:00:00Z"] * 2


def test_fields_that_are_only_null_wait_for_a_value() -> None:
    decoder = JsonDecoder()

    first = decoder.decode(_lines({"id": 1, "gone": None, "empty": [], "nothing": {}}))
    second = decoder.decode(_lines({"id": 2, "gone": "now here"}))

    assert first.parts[0].table.column_names == ["id"]
    assert second.parts[0].table.column_names == ["id", "gone"]


def test_tombstones_are_rows_of_nulls() -> None:
    decoded = JsonDecoder(pa.schema([("id", pa.int64())])).decode([None, b'{"id": 1}', None])

    (part,) = decoded.parts
    assert list(part.rows) == [0, 1, 2]
    assert part.table.column("id").to_pylist() == [None, 1, None]


def test_the_confluent_json_schema_wire_format(json_schema_values: Serialize) -> None:
    schema = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}}
    framed = json_schema_values("json-framed", schema, [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])

    decoded = JsonDecoder().decode([*framed, b'{"id": 3}', b"\x00\x00\x01"])

    framed_part, plain_part = decoded.parts
    assert framed_part.schema_id is not None and list(framed_part.rows) == [0, 1]
    assert framed_part.table.to_pylist() == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert plain_part.schema_id is None and list(plain_part.rows) == [2]
    (error,) = decoded.errors
    assert error.row == 3 and "shorter than its 5-byte header" in str(error.error)


def test_order_events() -> None:
    rnd = random.Random(3)
    events = [json.dumps(as_json(order(i, rnd))).encode() for i in range(500)]

    decoded = JsonDecoder().decode(list(events))

    assert decoded.errors == []
    table = decoded.parts[0].table
    assert table.num_rows == 500
    assert table.schema.field("created_at").type == pa.string()
    assert table.schema.field("items").type == pa.list_(
        pa.struct([("sku", pa.string()), ("qty", pa.int64()), ("price", pa.float64())])
    )


def test_plain_json_reads_the_columns_a_json_schema_gave_and_only_map_values_fail() -> None:
    """Plain records on a table a JSON Schema typed (as a restarted worker sees it: the table's own Arrow
    schema, large types and all) take its types, parsed from strings like framed values; a map value, which
    only a framed record can fill, and a string that is no uuid are errors of their records alone."""
    table = Schema(
        NestedField(1, "id", LongType()),
        NestedField(2, "at", TimestamptzType()),
        NestedField(3, "day", DateType()),
        NestedField(4, "ref", UUIDType()),
        NestedField(5, "tags", MapType(6, StringType(), 7, StringType())),
        NestedField(8, "visits", ListType(9, StructType(NestedField(10, "on", TimeType())))),
    ).as_arrow()
    decoder = JsonDecoder(table)
    ref = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"

    decoded = decoder.decode(
        _lines(
            {"id": 1, "at": "2024-05-06T09:08:09+02:00", "day": "2024-02-29", "ref": ref.upper()},
            {"id": 2, "tags": {"a": "b"}},
            {"id": 3, "visits": [{"on": "12:30:00.5Z", "by": "x"}], "new": True},
            {"id": 4, "ref": "not-a-uuid"},
            {"id": 5, "tags": None},
        )
    )

    (part,) = decoded.parts
    assert list(part.rows) == [0, 2, 4]
    assert [error.row for error in decoded.errors] == [1, 3]
    assert "column tags is a map" in str(decoded.errors[0].error)
    assert "JSONSerializer" in str(decoded.errors[0].error)
    assert "not a UUID" in str(decoded.errors[1].error)
    rows = part.table.to_pylist()
    assert rows[0]["at"] == datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    assert (rows[0]["day"], rows[0]["ref"]) == (datetime.date(2024, 2, 29), uuid.UUID(ref))
    assert rows[1]["visits"] == [{"on": datetime.time(12, 30, 0, 500000), "by": "x"}] and rows[1]["new"] is True
    assert rows[2]["tags"] is None and rows[2]["at"] is None
    assert part.table.schema.field("ref").type == pa.uuid()
    assert part.table.schema.field("tags").type == table.field("tags").type


def test_a_batch_of_nothing_but_bad_values() -> None:
    decoded = JsonDecoder().decode([b"{oops", b"[]", b""])

    assert decoded.parts == []
    assert [error.row for error in decoded.errors] == [0, 1, 2]
