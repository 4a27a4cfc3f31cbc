"""The one mapping of JSON Schema (draft-07 and 2020-12, the parts producers use) onto Arrow types.

The rules, with their reasons, are in ``docs/type-mapping.md``; in short: ``string`` (``date-time``, ``date``,
``time`` and ``uuid`` formats become timestamptz, date, time and uuid), ``integer`` → int64 (int32 when its
bounds fit), ``number`` → float64, ``boolean``, ``object`` with ``properties`` → struct, ``object`` with only an
``additionalProperties`` schema → map, ``array`` → list, ``null`` in a type list or ``anyOf``/``oneOf`` → the
other type; local ``$ref``s are followed. A value whose type the schema leaves open (several types, a free-form
object) is kept as its JSON text in a string column. Every field is nullable, as with Avro: tombstones and
writers that drop a field must be able to leave any column null.

``JsonSchemaArrow.read`` turns JSON texts into a table of the mapped schema, in bulk: pyarrow's JSON reader when
it can fill every column, else ``json.loads`` and ``pa.array`` (maps and JSON text need that). Both read format
columns as strings first and parse them with Arrow kernels (``finish``), which accept RFC 3339 offsets.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tableflow.errors import SchemaError
from tableflow.schema.avro import VALUE_COLUMN

Convert = Callable[[Any], Any]
"""Turns a value as ``json.loads`` returns it into the value ``pa.array`` takes for the storage type."""

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_FORMATS: dict[str, pa.DataType] = {
    "date-time": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "uuid": pa.uuid(),
}
_NULL = {"type": "null"}


@dataclass(frozen=True)
class JsonSchemaArrow:
    """A writer's JSON Schema as Arrow stores its values.

    ``record``: the schema is an object whose properties are the columns; otherwise the value is the one
    column ``VALUE_COLUMN``. ``columnar``: pyarrow's JSON reader can read it (no maps, no JSON-text columns).
    """

    schema: pa.Schema
    record: bool
    columnar: bool
    storage: pa.Schema  # ``schema`` with format columns as strings: what parsing produces
    convert: Convert | None  # per-record path: JSON text columns

    def read(self, texts: Sequence[bytes]) -> pa.Table:
        """One table row per JSON text; pyarrow's errors, ValueError or TypeError when a text does not fit."""
        if not self.record:
            texts = [b'{"' + VALUE_COLUMN.encode() + b'":' + text + b"}" for text in texts]
        if self.columnar:
            # a non-object text spliced into the wrapper must not add keys to it (``"a","b":1`` is no JSON value)
            extra = "ignore" if self.record else "error"
            options = pa_json.ParseOptions(explicit_schema=self.storage, unexpected_field_behavior=extra)
            table = pa_json.read_json(pa.BufferReader(b"\n".join(texts)), parse_options=options)
            if table.num_rows != len(texts):  # a text held several objects (or none)
                raise ValueError(f"{len(texts)} JSON texts held {table.num_rows} objects")
        else:
            values = [json.loads(text) for text in texts]
            if self.convert is not None:
                values = [self.convert(value) for value in values]
            table = pa.Table.from_struct_array(pa.array(values, pa.struct(list(self.storage))))
        if self.storage is self.schema:
            return table
        columns = [
            finish(column.combine_chunks(), field.type)
            for column, field in zip(table.columns, self.schema, strict=True)
        ]
        return pa.Table.from_arrays(columns, schema=self.schema)


def parse_json_schema(schema_str: str, label: str) -> JsonSchemaArrow | None:
    """Parse a JSON Schema's text and map it; SchemaError naming ``label`` when either is impossible.

    None for a schema that says nothing about the value's fields (``{"type": "object"}``, ``true``): its
    values are read like schemaless JSON, with inferred types.
    """
    try:
        root = json.loads(schema_str)
    except ValueError as exc:
        raise SchemaError(f"{label} is not valid JSON: {exc}") from exc
    if not isinstance(root, dict | bool):
        raise SchemaError(f"{label} is not a JSON Schema: a schema is an object or a boolean")
    node = _Mapper(root, label).map(root, ())
    if node is _TEXT and (root is True or _free_form(root)):
        return None
    record = node.type is None or isinstance(node.type, pa.StructType)
    fields = list(node.type or []) if record else [pa.field(VALUE_COLUMN, node.type)]
    storage_fields = list(node.storage or []) if record else [pa.field(VALUE_COLUMN, node.storage)]
    schema, storage = pa.schema(fields), pa.schema(storage_fields)
    convert = node.convert if record or node.convert is None else _wrap(node.convert)
    return JsonSchemaArrow(schema, record, node.columnar, schema if storage.equals(schema) else storage, convert)


@dataclass(frozen=True)
class _Node:
    """One schema mapped: the column's type, what parsing produces, whether pyarrow's reader can."""

    type: pa.DataType | None  # None: the value can only be null (or nothing): no column
    storage: pa.DataType | None
    columnar: bool
    convert: Convert | None = None


def _text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_TEXT = _Node(pa.string(), pa.string(), False, _text)
_NOTHING = _Node(None, None, True)


def _leaf(data_type: pa.DataType, storage: pa.DataType | None = None) -> _Node:
    return _Node(data_type, storage or data_type, True)


class _Mapper:
    """Walks one schema document; ``$ref``s are looked up in it, and a ref met again inside itself is refused."""

    def __init__(self, root: dict[str, Any] | bool, label: str) -> None:
        self._root = root
        self._label = label
        self._open: list[str] = ["#"]  # the refs being mapped, the document itself first

    def map(self, schema: Any, path: tuple[str, ...]) -> _Node:
        if schema is True or schema == {}:
            return _TEXT  # any value at all
        if schema is False:
            return _NOTHING
        if not isinstance(schema, dict):
            raise SchemaError(f"{self._label}: {_where(path)} is {json.dumps(schema)}, not a schema (an object)")
        if "$ref" in schema:
            return self._ref(schema["$ref"], path)
        own = {key: value for key, value in schema.items() if key not in _COMBINATORS}
        if "allOf" in schema:
            return self._all_of([own, *schema["allOf"]] if _typed(own) else schema["allOf"], path)
        for keyword in ("anyOf", "oneOf"):
            if keyword in schema and not _typed(own):  # beside a type of its own it only constrains that type
                return self._choice(schema[keyword], path)
        if "const" in schema:
            return self._literals([schema["const"]])
        if "enum" in schema:
            return self._literals(schema["enum"])
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else None
        if isinstance(kind, list):
            kinds = [k for k in kind if k != "null"]
            if len(kinds) > 1:
                return _TEXT
            kind = kinds[0] if kinds else "null"
        if kind is None:
            return _TEXT
        return self._typed(kind, schema, path)

    def _typed(self, kind: str, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        if kind == "string":
            fmt = _FORMATS.get(schema.get("format", ""))
            return _leaf(pa.string()) if fmt is None else _leaf(fmt, pa.string())
        if kind == "integer":
            return _leaf(pa.int32() if _fits_int32(schema) else pa.int64())
        if kind == "number":
            return _leaf(pa.float64())
        if kind == "boolean":
            return _leaf(pa.bool_())
        if kind == "null":
            return _NOTHING
        if kind == "object":
            return self._object(schema, path)
        if kind == "array":
            return self._array(schema, path)
        raise SchemaError(
            f"{self._label}: {_where(path)} has type {kind!r}; JSON Schema's types are string, integer, number, "
            "boolean, object, array and null"
        )

    def _object(self, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is None and isinstance(extra, dict) and extra:
            values = self.map(extra, (*path, "{}"))
            if values.type is None or values.storage is None:
                return _NOTHING
            inner = values.convert
            convert = None if inner is None else lambda v: None if v is None else {k: inner(x) for k, x in v.items()}
            return _Node(pa.map_(pa.string(), values.type), pa.map_(pa.string(), values.storage), False, convert)
        if properties is None:
            return _TEXT if extra is not False else _NOTHING  # a free-form object
        fields, storage, converts, columnar = [], [], [], True
        for name, child in properties.items():
            node = self.map(child, (*path, name))
            if node.type is None or node.storage is None:
                continue  # only ever null: nothing to store
            fields.append(pa.field(name, node.type))
            storage.append(pa.field(name, node.storage))
            columnar = columnar and node.columnar
            if node.convert is not None:
                converts.append((name, node.convert))
        if not fields:
            return _NOTHING
        return _Node(pa.struct(fields), pa.struct(storage), columnar, _object_convert(converts))

    def _array(self, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        items = schema.get("items", True)
        if isinstance(items, list) or "prefixItems" in schema:
            return _TEXT  # a tuple: positions of different types
        node = self.map(items, (*path, "[]"))
        if node.type is None or node.storage is None:
            return _TEXT
        inner = node.convert
        convert = None if inner is None else lambda v: None if v is None else [inner(x) for x in v]
        return _Node(pa.list_(node.type), pa.list_(node.storage), node.columnar, convert)

    def _choice(self, branches: list[Any], path: tuple[str, ...]) -> _Node:
        """``anyOf``/``oneOf``: null and one other schema is that schema; branches of one type are that type."""
        present = [branch for branch in branches if branch != _NULL]
        nodes = [node for node in (self.map(branch, path) for branch in present) if node.type is not None]
        if not nodes:
            return _NOTHING
        if all(node == nodes[0] for node in nodes):
            return nodes[0]
        return _TEXT

    def _all_of(self, branches: list[Any], path: tuple[str, ...]) -> _Node:
        """``allOf``: one schema is that schema; objects are the union of their properties; else JSON text."""
        branches = [branch for branch in branches if not isinstance(branch, dict) or _typed(branch)]
        nodes = [node for node in (self.map(branch, path) for branch in branches) if node.type is not None]
        if len(nodes) == 1:
            return nodes[0]
        if nodes and all(isinstance(node.type, pa.StructType) for node in nodes):
            merged: dict[str, Any] = {}
            for branch in branches:
                merged.update(self._properties(branch, path))
            return self._object({"properties": merged}, path)
        return _TEXT

    def _properties(self, schema: Any, path: tuple[str, ...]) -> dict[str, Any]:
        while isinstance(schema, dict) and "$ref" in schema:
            schema = self._resolve(schema["$ref"], path)
        if not isinstance(schema, dict):
            return {}
        merged: dict[str, Any] = {}
        for branch in schema.get("allOf", []):
            merged.update(self._properties(branch, path))
        return merged | dict(schema.get("properties", {}))

    def _literals(self, values: list[Any]) -> _Node:
        """``enum``/``const``: the type the values share (strings, integers, ...); else JSON text."""
        kinds = {type(value) for value in values if value is not None}
        if kinds == {str}:
            return _leaf(pa.string())
        if kinds == {bool}:
            return _leaf(pa.bool_())
        if kinds == {int}:
            return _leaf(pa.int64())
        if kinds <= {int, float} and kinds:
            return _leaf(pa.float64())
        return _NOTHING if not kinds else _TEXT

    def _ref(self, ref: Any, path: tuple[str, ...]) -> _Node:
        if ref in self._open:
            raise SchemaError(
                f"{self._label} is recursive: {_where(path)} refers back to {ref}; Iceberg tables cannot hold "
                "recursive types, so bound the nesting in the schema (e.g. a fixed number of levels)"
            )
        target = self._resolve(ref, path)
        self._open.append(ref)
        try:
            return self.map(target, path)
        finally:
            self._open.pop()

    def _resolve(self, ref: Any, path: tuple[str, ...]) -> Any:
        """A local JSON pointer (``#``, ``#/$defs/X``, ``#/definitions/X``) into the schema document."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(
                f"{self._label}: {_where(path)} refers to {ref!r}, outside the schema; references to other "
                "schemas are not supported yet, so define the type in the schema's $defs (or definitions)"
            )
        target: Any = self._root
        for token in filter(None, ref[1:].split("/")):
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and key in target:
                target = target[key]
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
            else:
                raise SchemaError(f"{self._label}: {_where(path)} refers to {ref}, which the schema does not define")
        return target


def _free_form(schema: Any) -> bool:
    """An object schema without properties or a schema for further ones: any object at all."""
    if not isinstance(schema, dict):
        return False
    extra = schema.get("additionalProperties", True)
    return schema.get("type", "object") == "object" and "properties" not in schema and extra in (True, {})


def _where(path: tuple[str, ...]) -> str:
    return f"field {'.'.join(path)}" if path else "the top-level schema"


def _fits_int32(schema: dict[str, Any]) -> bool:
    """Whether both bounds are given and lie within int32: then the column is int32, as narrow as the data."""
    low: Any = schema.get("minimum", schema.get("exclusiveMinimum"))
    high: Any = schema.get("maximum", schema.get("exclusiveMaximum"))
    if not all(isinstance(bound, int | float) and not isinstance(bound, bool) for bound in (low, high)):
        return False
    return bool(low >= _INT32_MIN and high <= _INT32_MAX)


def _object_convert(converts: list[tuple[str, Convert]]) -> Convert | None:
    if not converts:
        return None

    def convert(value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # pa.array reports it
        for name, field_convert in converts:
            if name in value:
                value[name] = field_convert(value[name])
        return value

    return convert


_COMBINATORS = ("allOf", "anyOf", "oneOf")
_TYPING = ("type", "properties", "items", "prefixItems", "additionalProperties", "$ref", "const", "enum", *_COMBINATORS)


def _typed(schema: dict[str, Any]) -> bool:
    """Whether a schema object says what type its value has, rather than only constraining it
    (``{"required": ["a"]}``, ``{"minLength": 1}``)."""
    return any(key in schema for key in _TYPING)


def _wrap(convert: Convert) -> Convert:
    """``convert`` applied inside a non-object value's ``{VALUE_COLUMN: value}`` wrapper (see ``read``)."""
    return lambda value: {VALUE_COLUMN: convert(value[VALUE_COLUMN])}


def finish(array: pa.Array, target: pa.DataType) -> pa.Array:
    """A parsed array (format columns as strings, a column plain JSON cannot fill as nulls) as ``target``;
    ArrowInvalid for a string that does not parse."""
    if array.type == target:
        return array
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), target)
    if isinstance(target, pa.StructType):
        children = [finish(array.field(i), target.field(i).type) for i in range(target.num_fields)]
        return pa.StructArray.from_arrays(
            children, fields=list(target), mask=array.is_null() if array.null_count else None
        )
    if isinstance(target, pa.ListType | pa.LargeListType):
        values = finish(array.values, target.value_type)
        listed = pa.ListArray.from_arrays(
            array.offsets, values, type=pa.list_(target.value_field), mask=array.is_null() if array.null_count else None
        )
        return listed.cast(target)  # a large list: a column of the table's own Arrow schema
    if isinstance(target, pa.MapType):
        items = finish(array.items, target.item_type)
        return pa.MapArray.from_arrays(
            array.offsets, array.keys, items, type=target, mask=array.is_null() if array.null_count else None
        )
    if target == pa.time64("us"):
        return _time(array)
    if isinstance(target, pa.UuidType):
        return _uuid(array)
    return pc.cast(pc.utf8_upper(array) if pa.types.is_timestamp(target) else array, target)


def _time(strings: pa.Array) -> pa.Array:
    """RFC 3339 times, with or without an offset (``12:30:00``, ``12:30:00.5+02:00``), as UTC time of day."""
    upper = pc.utf8_upper(strings)
    zoned = pc.if_else(
        pc.match_substring_regex(upper, r"(Z|[+-]\d\d:\d\d)$"), upper, pc.binary_join_element_wise(upper, "Z", "")
    )
    stamps = pc.cast(pc.binary_join_element_wise("1970-01-01T", zoned, ""), pa.timestamp("us", tz="UTC"))
    return pc.cast(stamps, pa.time64("us"))


def _uuid(strings: pa.Array) -> pa.Array:
    """Textual UUIDs (``a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11``, any case) as Arrow uuids, decoded in one call."""
    digits = pc.replace_substring(strings, "-", "")
    if pc.all(pc.match_substring_regex(digits, r"^[0-9A-Fa-f]{32}$")).as_py() is False:
        raise pa.ArrowInvalid("a uuid column holds a string that is not a UUID (32 hex digits, with or without dashes)")
    hex_digits = pc.cast(pc.fill_null(digits, "0" * 32), pa.binary(32))
    data = hex_digits.buffers()[1][hex_digits.offset * 32 : (hex_digits.offset + len(hex_digits)) * 32]
    storage = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(strings), [None, pa.py_buffer(bytes.fromhex(data.to_pybytes().decode("ascii")))]
    )
    if strings.null_count:
        storage = pc.if_else(strings.is_null(), pa.scalar(None, pa.binary(16)), storage)
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)
