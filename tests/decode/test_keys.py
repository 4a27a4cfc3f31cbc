"""Keys decoded into ``_kafka_key_decoded`` from the bytes confluent-kafka's key serializers write."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

from tableflow.config import TableSettings
from tableflow.ingest.decode import Decoded
from tableflow.ingest.decode.json import JsonDecoder
from tableflow.ingest.decode.key import KEY_COLUMN, KeyDecoder
from tableflow.schema.store import SchemaStore

pytestmark = pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")  # the registry's parser

KEY = {
    "type": "record",
    "name": "Key",
    "fields": [{"name": "tenant", "type": "string"}, {"name": "id", "type": "long"}],
}
KEY_V2 = {**KEY, "fields": [*KEY["fields"], {"name": "region", "type": ["null", "string"], "default": None}]}
JSON_KEY = {"type": "object", "properties": {"tenant": {"type": "string"}, "id": {"type": "integer"}}}

Keys = Callable[[str, Any, Sequence[Any]], list[bytes]]


@pytest.fixture(scope="module")
def avro_keys(client: SchemaRegistryClient) -> Keys:
    def serialize(topic: str, schema: Any, keys: Sequence[Any]) -> list[bytes]:
        serializer = AvroSerializer(client, json.dumps(schema))
        return [serializer(key, SerializationContext(topic, MessageField.KEY)) for key in keys]

    return serialize


@pytest.fixture(scope="module")
def json_keys(client: SchemaRegistryClient) -> Keys:
    def serialize(topic: str, schema: Any, keys: Sequence[Any]) -> list[bytes]:
        serializer = JSONSerializer(json.dumps(schema), client)
        return [serializer(key, SerializationContext(topic, MessageField.KEY)) for key in keys]

    return serialize


def _values(count: int) -> Decoded:
    """Decoded plain JSON values ``{"v": i}``, the part the keys are attached to."""
    return JsonDecoder().decode([json.dumps({"v": i}).encode() for i in range(count)])


def _key_column(decoded: Decoded) -> list[Any]:
    (part,) = decoded.parts
    return list(zip(part.rows, part.table.column(KEY_COLUMN).to_pylist(), strict=True))


def test_string_keys(store: SchemaStore) -> None:
    serialize = StringSerializer()
    keys = [serialize("k-1"), None, serialize("ключ"), b"\xff\xfe"]

    decoded = KeyDecoder("string", store).attach(_values(4), keys)

    assert _key_column(decoded) == [(0, "k-1"), (1, None), (2, "ключ")]
    (error,) = decoded.errors
    assert error.row == 3 and "the record's key is not UTF-8" in str(error.error)


@pytest.mark.parametrize(
    ("key_format", "schema", "keys", "expected_type"),
    [
        (
            "avro",
            KEY,
            [{"tenant": "a", "id": 1}, {"tenant": "b", "id": 2}],
            pa.struct([("tenant", pa.string()), ("id", pa.int64())]),
        ),
        ("avro", "long", [1, 2**40], pa.int64()),
        ("avro", {"type": "string", "logicalType": "uuid"}, ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"] * 2, pa.uuid()),
        (
            "json",
            JSON_KEY,
            [{"tenant": "a", "id": 1}, {"tenant": "b", "id": 2}],
            pa.struct([("tenant", pa.string()), ("id", pa.int64())]),
        ),
        ("json", {"type": "string"}, ["k1", "k2"], pa.string()),
        ("json", {"type": "integer", "minimum": 0, "maximum": 100}, [1, 2], pa.int32()),
    ],
)
def test_schema_keys_map_like_values(
    key_format: str,
    schema: Any,
    keys: list[Any],
    expected_type: pa.DataType,
    avro_keys: Keys,
    json_keys: Keys,
    store: SchemaStore,
) -> None:
    serialize = avro_keys if key_format == "avro" else json_keys
    written: list[bytes | None] = [*serialize(f"keys-{key_format}-{len(json.dumps(schema))}", schema, keys), None]
    settings = TableSettings.model_validate({"topic": "t", "format": "json", "key_format": key_format})

    decoded = KeyDecoder(settings.key_format, store).attach(_values(3), written)

    assert decoded.errors == []
    (part,) = decoded.parts
    column = part.table.column(KEY_COLUMN)
    assert column.type == expected_type
    assert column.null_count == 1 and column[2].as_py() is None
    assert part.table.column("v").to_pylist() == [0, 1, 2]


def test_keys_of_two_schema_versions_share_one_column(avro_keys: Keys, store: SchemaStore) -> None:
    v1 = avro_keys("keys-versions", KEY, [{"tenant": "a", "id": 1}])
    v2 = avro_keys("keys-versions", KEY_V2, [{"tenant": "b", "id": 2, "region": "eu"}])

    decoded = KeyDecoder("avro", store).attach(_values(3), [*v2, *v1, *v2])

    assert _key_column(decoded) == [
        (0, {"tenant": "b", "id": 2, "region": "eu"}),
        (1, {"tenant": "a", "id": 1, "region": None}),
        (2, {"tenant": "b", "id": 2, "region": "eu"}),
    ]


def test_keys_whose_field_changed_type_in_one_batch_fail_alone(avro_keys: Keys, store: SchemaStore) -> None:
    """long and double in one batch: no double column (a long column cannot take it), no lossy cast of 2**60."""
    num = {"type": "record", "name": "Num", "fields": [{"name": "x", "type": "long"}]}
    (big,) = avro_keys("keys-retyped", num, [{"x": 2**60}])
    (real,) = avro_keys("keys-retyped", {**num, "fields": [{"name": "x", "type": "double"}]}, [{"x": 1.5}])

    decoded = KeyDecoder("avro", store).attach(_values(3), [big, real, big])

    (error,) = decoded.errors
    assert error.row == 1 and "cannot share the column" in str(error.error)
    assert _key_column(decoded) == [(0, {"x": 2**60}), (2, {"x": 2**60})]


def test_plain_json_keys_keep_the_types_of_the_tables_key_column(store: SchemaStore) -> None:
    """After a restart a batch of whole numbers still fills a double column, as values do."""
    table = pa.schema([pa.field(KEY_COLUMN, pa.struct([("x", pa.float64())]))])

    decoded = KeyDecoder("json", store, table).attach(_values(2), [b'{"x": 1}', b'{"x": 2}'])

    (part,) = decoded.parts
    assert part.table.schema.field(KEY_COLUMN).type == pa.struct([("x", pa.float64())])
    assert _key_column(decoded) == [(0, {"x": 1.0}), (1, {"x": 2.0})]


def test_a_key_that_does_not_decode_fails_its_record_only(avro_keys: Keys, store: SchemaStore) -> None:
    (good,) = avro_keys("keys-bad", KEY, [{"tenant": "a", "id": 1}])
    keys: list[bytes | None] = [good, b"plain", good[:6], good]
    values = _values(4)
    values.errors.clear()

    decoded = KeyDecoder("avro", store).attach(values, keys)

    assert [error.row for error in decoded.errors] == [1, 2]
    assert all(
        str(error.error).startswith("the record's key does not decode (key_format avro)") for error in decoded.errors
    )
    (part,) = decoded.parts
    assert list(part.rows) == [0, 3] and part.table.column("v").to_pylist() == [0, 3]


def test_a_value_error_is_reported_once_even_when_the_key_fails_too(store: SchemaStore) -> None:
    values = JsonDecoder().decode([b'{"v": 0}', b"{broken"])

    decoded = KeyDecoder("json", store).attach(values, [b'{"k": 1}', b"{also broken"])

    (error,) = decoded.errors
    assert error.row == 1 and "invalid JSON" in str(error.error) and "key" not in str(error.error)
    assert _key_column(decoded) == [(0, {"k": 1})]


def test_binary_keys_change_nothing(store: SchemaStore) -> None:
    values = _values(2)

    assert KeyDecoder("binary", store).attach(values, [b"a", None]) is values
