"""The one mapping of Avro types onto Arrow types, and of the Python values fastavro reads onto Arrow values.

Both decode paths end in the types chosen here: the columnar reader's output is cast to ``AvroArrow.schema``,
and the per-record path builds its table from fastavro's values with ``AvroArrow.to_table``. Every Arrow field
is nullable, whatever the Avro schema says, so a table's value columns are optional from the start and schema
evolution never has to turn a required column into an optional one.

A union of ``null`` and one type is that type, nullable. Any other union becomes a struct with one nullable
member per non-null branch, named after the branch (``int``, ``string``, a named type's short name), exactly
one of them set; the struct is null when the ``null`` branch was written.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
import struct
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from io import BytesIO
from typing import Any

import fastavro
import fastavro.schema
import pyarrow as pa

from tableflow.errors import SchemaError

Convert = Callable[[Any], Any]
"""Turns one value as fastavro reads it into the value ``pa.array`` takes for the mapped type."""

VALUE_COLUMN = "value"
"""The one column of a table whose writer schema is not a record (a bare ``string``, an array, ...)."""

ALIASES_METADATA = b"avro.aliases"
"""Arrow field metadata holding a record field's Avro ``aliases`` (a JSON list): the names it had before, which
schema evolution uses to rename the column (``tableflow.schema.evolution``)."""

_PRIMITIVES: dict[str, tuple[pa.DataType, type]] = {
    # Avro type: (Arrow type, Python type fastavro reads it as)
    "null": (pa.null(), type(None)),
    "boolean": (pa.bool_(), bool),
    "int": (pa.int32(), int),
    "long": (pa.int64(), int),
    "float": (pa.float32(), float),
    "double": (pa.float64(), float),
    "bytes": (pa.binary(), bytes),
    "string": (pa.string(), str),
}


def _uuid_bytes(value: uuid.UUID) -> bytes:
    return value.bytes


_LOGICAL: dict[tuple[str, str], tuple[pa.DataType, type, Convert | None]] = {
    # (Avro type, logical type): (Arrow type, Python type fastavro reads it as, conversion). A logical type
    # missing here, or on another Avro type, is ignored as the Avro spec says: the value keeps its Avro type.
    ("int", "date"): (pa.date32(), datetime.date, None),
    ("int", "time-millis"): (pa.time64("us"), datetime.time, None),
    ("long", "time-micros"): (pa.time64("us"), datetime.time, None),
    ("long", "timestamp-millis"): (pa.timestamp("us", tz="UTC"), datetime.datetime, None),
    ("long", "timestamp-micros"): (pa.timestamp("us", tz="UTC"), datetime.datetime, None),
    ("long", "timestamp-nanos"): (pa.timestamp("ns", tz="UTC"), int, None),  # fastavro reads nanos as the long
    ("long", "local-timestamp-millis"): (pa.timestamp("us"), datetime.datetime, None),
    ("long", "local-timestamp-micros"): (pa.timestamp("us"), datetime.datetime, None),
    ("long", "local-timestamp-nanos"): (pa.timestamp("ns"), int, None),
    # pyiceberg maps pa.uuid() to and from Iceberg's uuid type (fixed_size_binary(16) would become fixed[16]);
    # pa.array builds it from its storage, 16 bytes, inside structs and lists
    ("string", "uuid"): (pa.uuid(), uuid.UUID, _uuid_bytes),
    ("fixed", "uuid"): (pa.uuid(), bytes, None),
}

_ROW_ONLY_LOGICAL = frozenset({"duration"})
"""Logical types the columnar reader interprets differently (duration as an interval, which Iceberg lacks):
schemas that use them are decoded record by record, where the value stays fixed(12) bytes."""

_NAMED = frozenset({"record", "error", "enum", "fixed"})


@dataclass(frozen=True)
class AvroArrow:
    """A writer schema as fastavro reads it (``parsed``) and as Arrow stores it (``schema``).

    ``record`` says whether the columns are the record's fields or the one column ``VALUE_COLUMN``.
    ``columnar`` says whether the columnar reader returns the same values: false for schemas with unions of
    several non-null branches (read as Arrow unions), duration (read as an interval) and the null type.
    """

    parsed: Any
    schema: pa.Schema
    record: bool
    columnar: bool
    convert: Convert | None
    storage: pa.Schema  # ``schema`` with extension types (uuid) as their storage: what pa.array can build

    def read(self, datum: bytes) -> Any:
        """One datum as the value ``to_table`` takes; bytes after the datum are ignored, as Confluent's
        deserializer does. Raises whatever fastavro raises for bytes that do not decode."""
        # return_named_type: a named type in a union comes back as (full name, value), which tells two
        # records of one union apart
        value = fastavro.schemaless_reader(BytesIO(datum), self.parsed, None, return_named_type=True)
        return value if self.convert is None else self.convert(value)

    def to_table(self, values: Sequence[Any]) -> pa.Table:
        """Values from ``read`` as a table of ``schema``; pyarrow's errors (or OverflowError) for a value the
        Arrow type cannot hold, such as a decimal wider than its declared precision."""
        if self.record:
            table = pa.Table.from_struct_array(pa.array(values, pa.struct(list(self.storage))))
        else:
            table = pa.table([pa.array(values, self.storage.field(0).type)], schema=self.storage)
        return table if self.storage is self.schema else table.cast(self.schema)


def parse_avro(schema_str: str, label: str) -> AvroArrow:
    """Parse an Avro schema's text and map it; SchemaError naming ``label`` when either is impossible."""
    try:
        parsed = fastavro.parse_schema(json.loads(schema_str))
    except (ValueError, TypeError, KeyError, AttributeError, fastavro.schema.SchemaParseException) as exc:
        if isinstance(exc, fastavro.schema.UnknownType) and isinstance(exc.name, str):
            raise SchemaError(
                f"{label} uses type {exc.name}, which it does not define; schemas that reference other "
                "subjects' types are not supported yet, so define the type inline"
            ) from exc
        raise SchemaError(f"{label} is not a valid Avro schema: {exc}") from exc
    node = _Mapper(label).map(parsed, ())
    record = isinstance(parsed, dict) and parsed["type"] in ("record", "error")
    schema = pa.schema(list(node.type) if record else [pa.field(VALUE_COLUMN, node.type)])
    storage = pa.schema([field.with_type(_storage(field.type)) for field in schema])
    return AvroArrow(parsed, schema, record, node.columnar, node.convert, schema if storage.equals(schema) else storage)


def _storage(data_type: pa.DataType) -> pa.DataType:
    """``data_type`` with every extension type replaced by its storage type."""
    if isinstance(data_type, pa.BaseExtensionType):
        return data_type.storage_type
    if isinstance(data_type, pa.StructType):
        return pa.struct([child.with_type(_storage(child.type)) for child in data_type])
    if isinstance(data_type, pa.MapType):
        return pa.map_(data_type.key_type, _storage(data_type.item_type))
    if isinstance(data_type, pa.ListType):
        return pa.list_(data_type.value_field.with_type(_storage(data_type.value_type)))
    return data_type


@dataclass(frozen=True)
class _Node:
    """One Avro type mapped: its Arrow type, how fastavro's values become Arrow values, and its union facts."""

    type: pa.DataType
    convert: Convert | None
    columnar: bool
    avro_type: str  # the Avro type name: primitive, record, enum, fixed, array, map or union
    python: type  # what fastavro reads a value of this type as (outside a union)
    full_name: str | None = None  # named types only
    fits: Callable[[Any], bool] | None = None  # for int and float, which share a Python type with long/double


class _Mapper:
    """Walks a fastavro-parsed schema once; named types are looked up by full name, recursion is refused."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._named: dict[str, Any] = {}
        self._open: set[str] = set()  # named types whose definition is being mapped: a reference is a cycle

    def map(self, schema: Any, path: tuple[str, ...]) -> _Node:
        if isinstance(schema, list):
            return self._union(schema, path)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                arrow, python = _PRIMITIVES[schema]
                # the columnar reader refuses a field of type null inside a record ("unmasked nulls")
                return _Node(arrow, None, schema != "null", schema, python, fits=_FITS.get(schema))
            return self._reference(schema, path)
        avro_type = schema["type"]
        if isinstance(avro_type, dict | list):
            return self.map(avro_type, path)
        if avro_type in _NAMED:
            return self._named_type(schema, path)
        if avro_type == "array":
            return self._array(schema, path)
        if avro_type == "map":
            return self._map(schema, path)
        return self._logical(schema, avro_type, path)

    def _reference(self, name: str, path: tuple[str, ...]) -> _Node:
        if name in self._open:
            raise SchemaError(
                f"{self._label} is recursive: {_where(path)} refers back to type {name}; Iceberg tables "
                "cannot hold recursive types, so bound the nesting in the schema (e.g. a fixed number of levels)"
            )
        return self._named_type(self._named[name], path)

    def _named_type(self, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        name: str = schema["name"]
        self._named[name] = schema
        avro_type: str = schema["type"]
        logical = schema.get("logicalType")
        if avro_type == "enum":
            return _Node(pa.string(), None, True, avro_type, str, name)
        if avro_type == "fixed":
            size: int = schema["size"]
            if logical == "decimal" and _valid_decimal(schema):
                return _decimal(schema, avro_type, name)
            if logical == "uuid" and size == 16:
                arrow, python, _ = _LOGICAL[("fixed", "uuid")]
                return _Node(arrow, None, True, avro_type, python, name)
            columnar = logical not in _ROW_ONLY_LOGICAL
            return _Node(pa.binary(size), None, columnar, avro_type, bytes, name)
        self._open.add(name)
        try:
            fields: list[pa.Field] = []
            converts: list[tuple[str, Convert]] = []
            columnar = True
            for field in schema["fields"]:
                node = self.map(field["type"], (*path, field["name"]))
                aliases = field.get("aliases")
                metadata = {ALIASES_METADATA: json.dumps(aliases).encode()} if aliases else None
                fields.append(pa.field(field["name"], node.type, metadata=metadata))
                columnar = columnar and node.columnar
                if node.convert is not None:
                    converts.append((field["name"], node.convert))
        finally:
            self._open.discard(name)
        return _Node(pa.struct(fields), _record_convert(converts), columnar, avro_type, dict, name)

    def _array(self, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        items = self.map(schema["items"], (*path, "[]"))
        item_convert = items.convert
        convert = None if item_convert is None else lambda v: [item_convert(item) for item in v]
        return _Node(pa.list_(items.type), convert, items.columnar, "array", list)

    def _map(self, schema: dict[str, Any], path: tuple[str, ...]) -> _Node:
        values = self.map(schema["values"], (*path, "{}"))
        value_convert = values.convert
        convert = None if value_convert is None else lambda v: {k: value_convert(x) for k, x in v.items()}
        return _Node(pa.map_(pa.string(), values.type), convert, values.columnar, "map", dict)

    def _logical(self, schema: dict[str, Any], avro_type: str, path: tuple[str, ...]) -> _Node:
        logical = schema.get("logicalType")
        if logical == "decimal" and avro_type == "bytes" and _valid_decimal(schema):
            return _decimal(schema, avro_type, None)
        known = _LOGICAL.get((avro_type, logical)) if isinstance(logical, str) else None
        if known is not None:
            return _Node(known[0], known[2], True, avro_type, known[1])
        return self.map(avro_type, path)

    def _union(self, branches: list[Any], path: tuple[str, ...]) -> _Node:
        nodes = [self.map(branch, path) for branch in branches]
        present = [node for node in nodes if node.avro_type != "null"]
        if not present:
            return _Node(pa.null(), None, True, "null", type(None))
        if len(present) == 1:
            return _nullable(present[0])
        names = _member_names(present)
        members = [pa.field(name, node.type) for name, node in zip(names, present, strict=True)]
        return _Node(pa.struct(members), _union_convert(names, present), False, "union", tuple)


def _where(path: tuple[str, ...]) -> str:
    return f"field {'.'.join(path)}" if path else "the top-level type"


def _valid_decimal(schema: dict[str, Any]) -> bool:
    """Whether precision and scale make a decimal; the spec says to ignore an invalid one (plain bytes)."""
    precision, scale = schema.get("precision"), schema.get("scale", 0)
    return isinstance(precision, int) and isinstance(scale, int) and 0 <= scale <= precision and precision > 0


def _decimal(schema: dict[str, Any], avro_type: str, name: str | None) -> _Node:
    precision: int = schema["precision"]
    scale: int = schema.get("scale", 0)
    arrow = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
    return _Node(arrow, None, True, avro_type, decimal.Decimal, name)


def _fits_int32(value: int) -> bool:
    return -(2**31) <= value < 2**31


def _fits_float32(value: float) -> bool:
    try:
        return math.isnan(value) or struct.unpack("<f", struct.pack("<f", value))[0] == value
    except OverflowError:
        return False


_FITS: dict[str, Callable[[Any], bool]] = {"int": _fits_int32, "float": _fits_float32}


def _record_convert(converts: list[tuple[str, Convert]]) -> Convert | None:
    if not converts:
        return None

    def convert(record: dict[str, Any]) -> dict[str, Any]:
        for name, field_convert in converts:  # fastavro's dicts are ours to change
            record[name] = field_convert(record[name])
        return record

    return convert


def _nullable(node: _Node) -> _Node:
    """``["null", T]``: T's type; a named T arrives as ``(name, value)`` (see ``AvroArrow.read``)."""
    inner = node.convert
    convert: Convert
    if node.full_name is not None:
        convert = _second if inner is None else lambda v: None if v is None else inner(v[1])
    elif inner is not None:
        convert = lambda v: None if v is None else inner(v)  # noqa: E731 - one of two closures
    else:
        return node
    return replace(node, convert=convert)


def _second(value: tuple[str, Any] | None) -> Any:
    return None if value is None else value[1]


def _member_names(nodes: list[_Node]) -> list[str]:
    """Branch names: the Avro type, or a named type's short name (its full name if two share a short name)."""
    short = [node.full_name.rsplit(".", 1)[-1] if node.full_name else node.avro_type for node in nodes]
    return [
        name if short.count(name) == 1 or node.full_name is None else node.full_name.replace(".", "_")
        for name, node in zip(short, nodes, strict=True)
    ]


def _union_convert(names: list[str], nodes: list[_Node]) -> Convert:
    """A union value as a struct with one member set.

    Named branches are found by the name fastavro returns with them. Others by the Python type of the value;
    only int/long and float/double share one, and Avro allows each once per union, so the value goes to the
    narrower branch when it fits there: the number is the same either way, only the member may differ from
    the one the writer chose.
    """
    empty = dict.fromkeys(names)
    by_name: dict[str, tuple[str, Convert | None]] = {}
    by_python: dict[type, list[tuple[str, _Node]]] = {}
    for name, node in zip(names, nodes, strict=True):
        if node.full_name is not None:
            by_name[node.full_name] = (name, node.convert)
        else:
            by_python.setdefault(node.python, []).append((name, node))
    for candidates in by_python.values():
        candidates.sort(key=lambda candidate: candidate[1].fits is None)  # narrow (has a fits test) first

    def convert(value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        member: dict[str, Any] = dict(empty)
        if isinstance(value, tuple):
            name, branch_convert = by_name[value[0]]
            member[name] = value[1] if branch_convert is None else branch_convert(value[1])
            return member
        for name, node in by_python.get(type(value), ()):
            if node.fits is None or node.fits(value):
                member[name] = value if node.convert is None else node.convert(value)
                return member
        raise ValueError(f"union value {value!r} fits none of the branches {names}")

    return convert
