"""Every JSON Schema rule of ``tableflow.schema.json_schema``: the Arrow type and values, from real bytes.

Each case is one property of an object schema, written by confluent-kafka's JSONSerializer against the embedded
registry (which also validates the values against the schema) and decoded by the JSON decoder with the
registry as its schema source. The rules are listed in docs/type-mapping.md.
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pyiceberg.types import DateType, IntegerType, LongType, MapType, TimestamptzType, TimeType, UUIDType

from tableflow.errors import SchemaError
from tableflow.ingest.decode.json import JsonDecoder
from tableflow.schema.json_schema import parse_json_schema
from tableflow.schema.store import SchemaStore
from tests.decode.conftest import Serialize, iceberg_table
from tests.duck import iceberg_connection

UTC = datetime.UTC
UUID = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
ITEM = {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}, "required": ["sku"]}
ITEM_TYPE = pa.struct([("sku", pa.string()), ("qty", pa.int64())])
STRING_OR_NULL = {"type": ["string", "null"]}


@dataclass(frozen=True)
class Case:
    schema: Any  # the property's JSON Schema
    values: list[Any]  # what the producer writes
    arrow: pa.DataType  # the column's type
    expected: list[Any] | None = None  # the column's values, as pa.array takes them; None: same as written
    defs: dict[str, Any] | None = None  # the object schema's $defs / definitions


CASES: dict[str, Case] = {
    "string": Case({"type": "string"}, ["héllo ✓", ""], pa.string()),
    "integer": Case({"type": "integer"}, [2**62, -1], pa.int64()),
    "integer-int32-bounds": Case({"type": "integer", "minimum": 0, "maximum": 1000}, [7, 1000], pa.int32()),
    "integer-one-bound": Case({"type": "integer", "minimum": 0}, [2**40], pa.int64()),
    "number": Case({"type": "number"}, [1.5, 2, -1e300], pa.float64(), [1.5, 2.0, -1e300]),
    "boolean": Case({"type": "boolean"}, [True, False], pa.bool_()),
    "date-time": Case(
        {"type": "string", "format": "date-time"},
        ["2024-05-06T07:08:09.123456Z", "2024-05-06T09:08:09+02:00", "2024-05-06t07:08:09.5z", "1969-12-31T23:59:59Z"],
        pa.timestamp("us", tz="UTC"),
        [
            datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
            datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
            datetime.datetime(2024, 5, 6, 7, 8, 9, 500000, tzinfo=UTC),
            datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        ],
    ),
    "date": Case({"type": "string", "format": "date"}, ["2024-02-29"], pa.date32(), [datetime.date(2024, 2, 29)]),
    "time": Case(
        {"type": "string", "format": "time"},
        ["23:59:59.999", "12:00:00+02:00", "01:02:03Z"],
        pa.time64("us"),
        [datetime.time(23, 59, 59, 999000), datetime.time(10, 0), datetime.time(1, 2, 3)],
    ),
    "uuid": Case(
        {"type": "string", "format": "uuid"}, [str(UUID), str(UUID).upper()], pa.uuid(), [UUID.bytes, UUID.bytes]
    ),
    "other-format": Case({"type": "string", "format": "email"}, ["a@example.com"], pa.string()),
    "object": Case(ITEM, [{"sku": "a", "qty": 1}, {"sku": "b"}], ITEM_TYPE, [{"sku": "a", "qty": 1}, {"sku": "b"}]),
    "object-extra-keys-dropped": Case(
        {**ITEM, "additionalProperties": True},
        [{"sku": "a", "qty": 1, "extra": [1]}],
        ITEM_TYPE,
        [{"sku": "a", "qty": 1}],
    ),
    "nested-formats": Case(
        {
            "type": "object",
            "properties": {
                "at": {"type": ["string", "null"], "format": "date-time"},
                "day": {"type": "array", "items": {"type": ["string", "null"], "format": "date"}},
            },
        },
        [{"at": "2024-01-01T00:00:00Z", "day": ["2024-01-02", None]}, {"at": None}],
        pa.struct([("at", pa.timestamp("us", tz="UTC")), ("day", pa.list_(pa.date32()))]),
        [
            {"at": datetime.datetime(2024, 1, 1, tzinfo=UTC), "day": [datetime.date(2024, 1, 2), None]},
            {"at": None, "day": None},
        ],
    ),
    "array": Case({"type": "array", "items": {"type": "integer"}}, [[1, 2], []], pa.list_(pa.int64())),
    "array-of-objects": Case({"type": "array", "items": ITEM}, [[{"sku": "a", "qty": 1}]], pa.list_(ITEM_TYPE)),
    "type-list-nullable": Case({"type": ["null", "integer"]}, [None, 3], pa.int64()),
    "anyOf-null": Case({"anyOf": [{"type": "null"}, ITEM]}, [None, {"sku": "a", "qty": 1}], ITEM_TYPE),
    "oneOf-null": Case(
        {"oneOf": [{"type": "string", "format": "date"}, {"type": "null"}]},
        ["2024-01-01", None],
        pa.date32(),
        [datetime.date(2024, 1, 1), None],
    ),
    "anyOf-same-type": Case(
        {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "string", "pattern": "^x"}]}, ["ab", "xyz"], pa.string()
    ),
    "ref-definitions": Case(
        {"$ref": "#/definitions/Item"}, [{"sku": "a", "qty": 1}], ITEM_TYPE, defs={"definitions": {"Item": ITEM}}
    ),
    "ref-defs": Case({"$ref": "#/$defs/Item"}, [{"sku": "a", "qty": 1}], ITEM_TYPE, defs={"$defs": {"Item": ITEM}}),
    "enum-of-strings": Case({"enum": ["NEW", "PAID"]}, ["PAID"], pa.string()),
    "enum-of-integers": Case({"enum": [1, 2, 3]}, [2], pa.int64()),
    "const": Case({"const": "v1"}, ["v1"], pa.string()),
    "map": Case(
        {"type": "object", "additionalProperties": {"type": "integer"}},
        [{"a": 1, "b": 2}, {}],
        pa.map_(pa.string(), pa.int64()),
        [[("a", 1), ("b", 2)], []],
    ),
    "map-of-dates": Case(
        {"type": "object", "additionalProperties": {"type": "string", "format": "date"}},
        [{"a": "2024-01-01"}],
        pa.map_(pa.string(), pa.date32()),
        [[("a", datetime.date(2024, 1, 1))]],
    ),
    "free-form-object": Case(
        {"type": "object"}, [{"a": [1, {"b": None}]}, {}], pa.string(), ['{"a":[1,{"b":null}]}', "{}"]
    ),
    "several-types": Case({"type": ["string", "integer"]}, ["x", 5], pa.string(), ['"x"', "5"]),
    "oneOf-objects": Case(
        {"oneOf": [ITEM, {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]}]},
        [{"amount": 2.5}],
        pa.string(),
        ['{"amount":2.5}'],
    ),
    "tuple": Case(
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}]},
        [["a", 1]],
        pa.string(),
        ['["a",1]'],
    ),
    "allOf-objects": Case(
        {"allOf": [ITEM, {"type": "object", "properties": {"note": STRING_OR_NULL}}]},
        [{"sku": "a", "note": "n"}],
        pa.struct([("sku", pa.string()), ("qty", pa.int64()), ("note", pa.string())]),
        [{"sku": "a", "qty": None, "note": "n"}],
    ),
    "allOf-beside-properties": Case(
        {"type": "object", "properties": {"id": {"type": "integer"}}, "allOf": [{"$ref": "#/$defs/Item"}]},
        [{"id": 7, "sku": "a", "qty": 1}],
        pa.struct([("id", pa.int64()), ("sku", pa.string()), ("qty", pa.int64())]),
        defs={"$defs": {"Item": ITEM}},
    ),
    "allOf-nested": Case(
        {"allOf": [{"allOf": [ITEM]}, {"type": "object", "properties": {"note": STRING_OR_NULL}}]},
        [{"sku": "a", "qty": 1, "note": "n"}],
        pa.struct([("sku", pa.string()), ("qty", pa.int64()), ("note", pa.string())]),
    ),
    "anyOf-constraints-beside-properties": Case(
        {**ITEM, "anyOf": [{"required": ["sku"]}, {"required": ["qty"]}]}, [{"sku": "a", "qty": 1}], ITEM_TYPE
    ),
}

ROW_ONLY = {"map", "map-of-dates", "free-form-object", "several-types", "oneOf-objects", "tuple"}
"""Cases pyarrow's JSON reader cannot read (maps, JSON text): json.loads and pa.array instead."""


def _object(name: str, case: Case) -> dict[str, Any]:
    return {"type": "object", "properties": {"f": case.schema, "other": STRING_OR_NULL}, **(case.defs or {})}


@pytest.mark.parametrize("name", list(CASES))
def test_json_schema_type(name: str, json_schema_values: Serialize, store: SchemaStore) -> None:
    case = CASES[name]
    schema = _object(name, case)
    written = [{"f": value, "other": "o"} for value in case.values]
    values: list[bytes | None] = [*json_schema_values(f"json-types-{name}", schema, written), None]

    decoded = JsonDecoder(source=store).decode(values)

    assert decoded.errors == []
    mapped = parse_json_schema(json.dumps(schema), name)
    assert mapped is not None and mapped.columnar == (name not in ROW_ONLY)
    column = pa.array(case.values if case.expected is None else case.expected, case.arrow)
    expected = pa.table({"f": column, "other": pa.array(["o"] * len(case.values))})
    first, tombstones = decoded.parts
    assert first.table.schema == expected.schema
    assert first.table.equals(expected), f"{first.table.to_pylist()} != {expected.to_pylist()}"
    assert list(first.rows) == list(range(len(case.values))) and first.schema_id is not None
    assert list(tombstones.rows) == [len(case.values)] and tombstones.schema_id is None
    assert all(field.nullable for field in first.table.schema)


def test_every_mapped_type_round_trips_through_an_iceberg_table(
    tmp_path: Path, json_schema_values: Serialize, store: SchemaStore
) -> None:
    """All cases as one record, appended with pyiceberg, read back by pyiceberg and DuckDB."""
    properties = {name.replace("-", "_"): case.schema for name, case in CASES.items()}
    defs: dict[str, Any] = {}
    for case in CASES.values():
        defs |= case.defs or {}
    schema = {"type": "object", "properties": properties, **defs}
    record = {name.replace("-", "_"): case.values[0] for name, case in CASES.items()}
    (part,) = JsonDecoder(source=store).decode(list(json_schema_values("json-iceberg-types", schema, [record]))).parts

    table = iceberg_table(tmp_path, "json_everything", part.table)

    iceberg = table.schema()
    assert isinstance(iceberg.find_type("date_time"), TimestamptzType)
    assert isinstance(iceberg.find_type("date"), DateType)
    assert isinstance(iceberg.find_type("time"), TimeType)
    assert isinstance(iceberg.find_type("uuid"), UUIDType)
    assert isinstance(iceberg.find_type("integer"), LongType)
    assert isinstance(iceberg.find_type("integer_int32_bounds"), IntegerType)
    assert isinstance(iceberg.find_type("map"), MapType)
    assert all(not field.required for field in iceberg.fields)
    assert table.scan().to_arrow().to_pylist() == part.table.to_pylist()
    duck = iceberg_connection().execute(
        f"SELECT epoch_us(date_time), date, time, uuid::VARCHAR, map FROM iceberg_scan('{table.metadata_location}')"
    )
    assert duck.fetchall() == [
        (
            int(datetime.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC).timestamp() * 1_000_000),
            datetime.date(2024, 2, 29),
            datetime.time(23, 59, 59, 999000),
            str(UUID),
            {"a": 1, "b": 2},
        )
    ]


def test_a_bare_type_is_one_column_named_value(json_schema_values: Serialize, store: SchemaStore) -> None:
    values: list[bytes | None] = list(
        json_schema_values("json-bare", {"type": "string", "format": "date"}, ["2024-01-01"])
    )

    (part,) = JsonDecoder(source=store).decode(values).parts

    assert part.table.equals(pa.table({"value": pa.array([datetime.date(2024, 1, 1)], pa.date32())}))


@pytest.mark.parametrize(
    ("subject", "schema", "written", "column"),
    [
        ("json-bare-text", {"type": ["string", "integer"]}, ["x", 5], pa.array(['"x"', "5"])),
        ("json-bare-texts", {"type": "array", "items": {"type": ["string", "integer"]}}, [[1, "a"]],
         pa.array([["1", '"a"']])),
    ],
)  # fmt: skip
def test_a_bare_type_of_json_text(
    subject: str, schema: Any, written: list[Any], column: pa.Array, json_schema_values: Serialize, store: SchemaStore
) -> None:
    values: list[bytes | None] = list(json_schema_values(subject, schema, written))

    (part,) = JsonDecoder(source=store).decode(values).parts

    assert part.table.equals(pa.table({"value": column}))


def test_a_bare_value_cannot_smuggle_keys_into_its_column(json_schema_values: Serialize, store: SchemaStore) -> None:
    good = list(json_schema_values("json-bare-smuggle", {"type": "string"}, ["a", "b"]))
    values: list[bytes | None] = [good[0], good[0][:5] + b'"x","junk":1', good[1]]

    decoded = JsonDecoder(source=store).decode(values)

    assert [error.row for error in decoded.errors] == [1]
    (part,) = decoded.parts
    assert list(part.rows) == [0, 2] and part.table.column("value").to_pylist() == ["a", "b"]


def test_a_free_form_top_level_object_is_read_like_plain_json(
    json_schema_values: Serialize, store: SchemaStore
) -> None:
    values: list[bytes | None] = list(json_schema_values("json-free", {"type": "object"}, [{"id": 1, "at": "x"}]))

    (part,) = JsonDecoder(source=store).decode(values).parts

    assert part.table.schema == pa.schema([("id", pa.int64()), ("at", pa.string())])


def test_a_recursive_schema_is_refused_by_name(json_schema_values: Serialize, store: SchemaStore) -> None:
    node = {"type": "object", "properties": {"next": {"$ref": "#"}, "name": {"type": "string"}}}
    with pytest.raises(SchemaError, match=r"writer schema id 7 is recursive: field next refers back to #"):
        parse_json_schema(json.dumps(node), "writer schema id 7")

    values: list[bytes | None] = list(
        json_schema_values("json-recursive", node, [{"name": "a", "next": {"name": "b"}}])
    )
    decoded = JsonDecoder(source=store).decode(values)

    assert decoded.parts == []
    (error,) = decoded.errors
    assert "is recursive" in str(error.error) and error.schema_id is not None


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "other.json#/Item"}, "references to other schemas are not supported"),
        ({"$ref": "#/$defs/Missing"}, "which the schema does not define"),
        ({"type": "decimal"}, "has type 'decimal'"),
        ([1, 2], "not a JSON Schema"),
    ],
)
def test_schemas_that_cannot_be_mapped_say_why(schema: Any, message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        parse_json_schema(json.dumps(schema), "writer schema id 9")


def test_exactly_the_values_that_do_not_fit_their_schema_fail(
    json_schema_values: Serialize, store: SchemaStore
) -> None:
    schema = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "u": {"type": "string", "format": "uuid"},
        },
    }
    (good,) = json_schema_values("json-misfits", schema, [{"id": 1, "at": "2024-01-01T00:00:00Z", "u": str(UUID)}])
    header = good[:5]  # the JSONSerializer validates, so bad values are framed by hand with the real schema id
    values: list[bytes | None] = [
        good,
        header + b'{"id": "one"}',  # a string where the schema says integer
        header + b'{"at": "yesterday"}',  # not a date-time
        header + b"{not json",
        header + b"[1]",  # not an object
        header + b'{"id": 2, "u": "not-a-uuid"}',
        header + b'{"id": 3}',
        b"\x00\x00\x00\x7f\xff" + b'{"id": 4}',  # a schema id the registry does not have
    ]

    decoded = JsonDecoder(source=store).decode(values)

    reasons = {error.row: str(error.error) for error in decoded.errors}
    assert reasons.keys() == {1, 2, 3, 4, 5, 7}
    assert all("does not match writer schema id" in reasons[row] for row in (1, 2, 5))
    assert "invalid JSON" in reasons[3] and "declares an object" in reasons[4]
    assert "not registered" in reasons[7] or "not found" in reasons[7].lower()
    (part,) = decoded.parts
    assert list(part.rows) == [0, 6]
    assert part.table.column("id").to_pylist() == [1, 3]


def test_an_avro_schema_id_in_a_json_table(avro_values: Serialize, store: SchemaStore) -> None:
    values: list[bytes | None] = list(avro_values("json-gets-avro", "string", ["a"]))

    (error,) = JsonDecoder(source=store).decode(values).errors

    assert "is a AVRO schema, but this is read as JSON" in str(error.error)
