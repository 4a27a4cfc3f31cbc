"""Schemaless JSON objects, one per record, decoded a batch at a time with pyarrow's JSON reader.

The batch's values are joined into one newline-delimited document and read in one call. A raw newline can only
be whitespace in valid JSON (inside strings it must be escaped), so newlines inside a value, as in
pretty-printed JSON, become spaces first. Types follow ``known_schema`` (the table's value columns) where it
has the field (strings for the formats a JSON Schema gave it, parsed as in framed values), and are inferred for
new fields; ``known_schema`` then grows by what the batch added, so a field keeps the type it was first seen
with. When the bulk read fails, each value is checked on its own (invalid JSON, not an object) and the rest is
bisected to find the records whose types conflict with the schema; exactly those become errors and the others
are still read in bulk.

Values in the Confluent JSON Schema wire format (magic byte 0, 4-byte schema id, JSON) are accepted too: no
JSON text starts with byte 0, so such a value loses its 5-byte header and its part carries the schema id. Their
types come from the writer's JSON Schema, fetched by id and mapped once (``tableflow.schema.json_schema``); fields
the schema does not declare are dropped. A value that does not fit its schema, or whose schema id is unknown,
is an error of that record alone: the group is bisected to find exactly those.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tableflow.errors import DecodeError, SchemaError
from tableflow.ingest.decode import Decoded, DecodedPart, RecordError
from tableflow.ingest.decode._wire import HEADER_BYTES, wire_rows
from tableflow.schema.json_data import normalize, widened
from tableflow.schema.json_schema import JsonSchemaArrow, finish, parse_json_schema
from tableflow.schema.registry import SchemaSource

_TOMBSTONE = b"{}"  # an object without fields: a row whose value columns are all null


class JsonDecoder:
    """Decodes JSON object values into tables whose types stay stable across batches.

    ``known_schema`` is the value columns' types (no ``_kafka_*`` columns): set it to the table's when the
    pipeline starts, and the decoder keeps it up to date with the fields later batches add. Its columns of
    types a JSON Schema gave (timestamptz, date, time, uuid) are parsed from strings as in framed values; a
    plain value that fills a map column is an error of that record (only framed values can fill one).
    ``source`` gives framed values' JSON Schemas; without it their types are inferred too.
    """

    def __init__(self, known_schema: pa.Schema | None = None, source: SchemaSource | None = None) -> None:
        self.known_schema = known_schema
        self._source = source
        self._writers: dict[int, JsonSchemaArrow | DecodeError | None] = {}

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """One part per schema id (None for plain JSON and tombstones), in order of first appearance."""
        decoded = Decoded()
        rows = wire_rows(values)
        present = cast("Sequence[bytes]", values)  # tombstones are only ever looked up through ``values``
        starts_with_zero = pc.starts_with(rows.array, pattern="\x00")
        blank = pc.match_substring_regex(rows.array, pattern=r"^[ \t\r\n]*$")  # pyarrow skips blank lines
        short = pc.and_(starts_with_zero, pc.less(pc.binary_length(rows.array), HEADER_BYTES))
        for row in _true(blank):
            decoded.errors.append(RecordError(row, _EMPTY))
        for row in _true(short):
            decoded.errors.append(RecordError(row, _short_header(len(present[row]))))
        plain = _true(pc.and_(pc.invert(starts_with_zero), pc.invert(blank)))
        groups: dict[int | None, tuple[list[int], Sequence[bytes]]] = {}
        if plain or rows.tombstones:
            plain = sorted(plain + rows.tombstones) if rows.tombstones else plain
            whole = len(plain) == len(values) and not rows.tombstones
            texts = present if whole else [values[row] or _TOMBSTONE for row in plain]
            groups[None] = (plain, texts)
        for schema_id, framed in rows.by_schema_id.items():
            kept: list[int] = []
            payloads: list[bytes] = []
            for row in framed:
                payload = present[row][HEADER_BYTES:]
                if not payload or payload.isspace():
                    decoded.errors.append(RecordError(row, _EMPTY, schema_id))
                else:
                    kept.append(row)
                    payloads.append(payload)
            groups[schema_id] = (kept, payloads)
        for group_id, (group_rows, group_texts) in sorted(groups.items(), key=lambda group: group[1][0][:1]):
            part = self._decode_group(group_id, group_rows, group_texts, decoded) if group_rows else None
            if part is not None:
                decoded.parts.append(part)
        decoded.errors.sort(key=lambda error: error.row)
        return decoded

    def close(self) -> None:
        """Nothing to release."""

    def _decode_group(
        self, schema_id: int | None, rows: list[int], texts: Sequence[bytes], decoded: Decoded
    ) -> DecodedPart | None:
        texts = _one_per_line(texts)
        if schema_id is not None and self._source is not None:
            try:
                writer = self._writer(schema_id, self._source)
            except DecodeError as exc:  # an id the registry does not know: maybe registered later, so not kept
                writer = exc
            if isinstance(writer, DecodeError):
                decoded.errors.extend(RecordError(row, writer, schema_id) for row in rows)
                return None
            if writer is not None:
                return _decode_typed(writer, schema_id, rows, texts, decoded)
        document = b"\n".join(texts)
        try:
            table = _read(document, self.known_schema)
        except pa.ArrowInvalid:
            table = None
        if table is None or table.num_rows != len(texts):  # more rows: some value held several objects
            rows, texts = _check_each(schema_id, rows, texts, decoded)
            conflicts, _ = _conflicts(texts, self.known_schema, self.known_schema)
            for index, reason in conflicts:
                column = None if self.known_schema is None else _map_column(json.loads(texts[index]), self.known_schema)
                decoded.errors.append(RecordError(rows[index], _conflict(reason, column), schema_id))
            bad = {index for index, _ in conflicts}
            rows = [row for index, row in enumerate(rows) if index not in bad]
            texts = [text for index, text in enumerate(texts) if index not in bad]
            if not rows:
                return None
            try:
                table = _read(b"\n".join(texts), self.known_schema)
            except pa.ArrowInvalid as exc:  # the bisection is meant to rule this out; never fail the batch
                decoded.errors.extend(RecordError(row, _conflict(str(exc)), schema_id) for row in rows)
                return None
        self.known_schema = table.schema if self.known_schema is None else _grown(self.known_schema, table.schema)
        return DecodedPart(table, rows, schema_id)

    def _writer(self, schema_id: int, source: SchemaSource) -> JsonSchemaArrow | DecodeError | None:
        """The writer's JSON Schema mapped, once per id (None: a free-form object, read like plain JSON); a
        schema this table cannot use is kept as its DecodeError. DecodeError (unknown id) and SchemaError
        (registry unreachable) from the source propagate."""
        if schema_id not in self._writers:
            self._writers[schema_id] = _prepare(schema_id, source)
        return self._writers[schema_id]


def _prepare(schema_id: int, source: SchemaSource) -> JsonSchemaArrow | DecodeError | None:
    registered = source.get_schema(schema_id)
    schema_type = registered.schema_type.upper()
    if schema_type != "JSON":
        return DecodeError(
            f"schema id {schema_id} is a {schema_type} schema, but this is read as JSON (format json): its "
            "producers must use the Schema Registry's JSON Schema serializer, or the table's format must match"
        )
    try:
        return parse_json_schema(registered.schema_str, f"writer schema id {schema_id}")
    except SchemaError as exc:
        return DecodeError(str(exc))


_MISFIT = (pa.ArrowException, ValueError, TypeError, OverflowError)
"""What ``JsonSchemaArrow.read`` raises for texts that are not JSON or do not fit the schema."""


def _decode_typed(
    writer: JsonSchemaArrow, schema_id: int, rows: list[int], texts: Sequence[bytes], decoded: Decoded
) -> DecodedPart | None:
    """The group read with its writer's types; values that do not fit are found by bisection."""
    try:
        return DecodedPart(writer.read(texts), rows, schema_id)
    except _MISFIT:
        pass
    bad = dict(_misfits(writer, texts))
    for index, reason in sorted(bad.items()):
        decoded.errors.append(RecordError(rows[index], _misfit(texts[index], reason, writer, schema_id), schema_id))
    kept = [index for index in range(len(rows)) if index not in bad]
    if not kept:
        return None
    try:
        table = writer.read([texts[index] for index in kept])
    except _MISFIT as exc:  # the bisection is meant to rule this out; never fail the batch
        decoded.errors.extend(
            RecordError(rows[index], _misfit(texts[index], str(exc), writer, schema_id), schema_id) for index in kept
        )
        return None
    return DecodedPart(table, [rows[index] for index in kept], schema_id)


def _misfits(writer: JsonSchemaArrow, texts: Sequence[bytes], start: int = 0) -> list[tuple[int, str]]:
    """Positions (from ``start``) of the texts ``writer`` cannot read, with the reader's reason."""
    try:
        writer.read(texts)
    except _MISFIT as exc:
        if len(texts) == 1:
            return [(start, str(exc))]
        middle = len(texts) // 2
        return _misfits(writer, texts[:middle], start) + _misfits(writer, texts[middle:], start + middle)
    return []


def _misfit(text: bytes, reason: str, writer: JsonSchemaArrow, schema_id: int) -> DecodeError:
    """Why one value failed: not JSON, not an object, or not what its schema declares."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        return DecodeError(f"invalid JSON ({exc}); a json table takes one JSON value per record, in UTF-8")
    if writer.record and not isinstance(value, dict):
        return DecodeError(
            f"the value is a JSON {_kind(value)}, but writer schema id {schema_id} declares an object; the "
            "producer wrote a value its schema does not allow"
        )
    return DecodeError(
        f"the JSON value does not match writer schema id {schema_id} ({reason}); the producer must write the "
        "types the schema under that id declares (check that it serializes with the schema it registered)"
    )


def _true(mask: pa.Array) -> list[int]:
    """The rows where ``mask`` is true (not null)."""
    rows: list[int] = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    return rows


def _read(document: bytes, known: pa.Schema | None) -> pa.Table:
    """Newline-delimited JSON as a table: ``known``'s types, inferred ones (normalized) for new fields.

    Columns of types the JSON reader cannot fill (from a JSON Schema) are read as ``_storage`` has them and
    finished as the framed path does. pyarrow's ArrowInvalid means the data does not fit; a column type
    neither can fill is a SchemaError.
    """
    storage = None if known is None else pa.schema([field.with_type(_storage(field.type)) for field in known])
    try:
        options = pa_json.ParseOptions(explicit_schema=storage, unexpected_field_behavior="infer")
        table = pa_json.read_json(pa.BufferReader(document), parse_options=options)
        schema = normalize(table.schema, storage)
        if not schema.equals(table.schema):
            options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
            table = pa_json.read_json(pa.BufferReader(document), parse_options=options)
        if known is None or storage == known:
            return table
        types = {field.name: field.type for field in known}
        fields = [field.with_type(_typed(field.type, types.get(field.name))) for field in table.schema]
        columns = [
            column if column.type == field.type else finish(column.combine_chunks(), field.type)
            for column, field in zip(table.columns, fields, strict=True)
        ]
        return pa.Table.from_arrays(columns, schema=pa.schema(fields))
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(
            f"the table's columns cannot be read from JSON ({exc}); a json table's columns take JSON's types "
            "(string, int64, double, boolean, struct, list, and types parsed from strings such as timestamps)"
        ) from exc


def _storage(data_type: pa.DataType) -> pa.DataType:
    """What the JSON reader reads a column of ``data_type`` as: the formats a JSON Schema gives (timestamptz,
    date, time, uuid) as strings; a map, which it cannot read, as null, so a value carrying one fails alone;
    large lists (the table's own Arrow schema has them) as lists."""
    if isinstance(data_type, pa.StructType):
        return pa.struct([field.with_type(_storage(field.type)) for field in data_type])
    if isinstance(data_type, pa.ListType | pa.LargeListType):  # the reader has no large lists (Iceberg's)
        return pa.list_(data_type.value_field.with_type(_storage(data_type.value_type)))
    if isinstance(data_type, pa.MapType):
        return pa.null()
    temporal = pa.types.is_timestamp(data_type) or pa.types.is_date(data_type) or pa.types.is_time(data_type)
    if temporal or isinstance(data_type, pa.UuidType):
        return pa.string()
    return data_type


def _typed(read: pa.DataType, known: pa.DataType | None) -> pa.DataType:
    """The type a column read from ``_storage(known)`` (and perhaps grown by new nested fields) is finished to."""
    if isinstance(read, pa.StructType) and isinstance(known, pa.StructType):
        children = {field.name: field.type for field in known}
        return pa.struct([field.with_type(_typed(field.type, children.get(field.name))) for field in read])
    if isinstance(read, pa.ListType | pa.LargeListType) and isinstance(known, pa.ListType | pa.LargeListType):
        value = known.value_field.with_type(_typed(read.value_type, known.value_type))
        return pa.large_list(value) if isinstance(known, pa.LargeListType) else pa.list_(value)
    return read if known is None else known


def _grown(known: pa.Schema, read: pa.Schema) -> pa.Schema:
    """``known`` plus the fields (also nested ones) a batch added; types ``known`` has are never changed."""
    return pa.unify_schemas([known, read])


def _check_each(
    schema_id: int | None, rows: list[int], texts: Sequence[bytes], decoded: Decoded
) -> tuple[list[int], list[bytes]]:
    """The values that are one JSON object each; the others become errors."""
    good_rows: list[int] = []
    good_texts: list[bytes] = []
    for row, text in zip(rows, texts, strict=True):
        try:
            value = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            error = DecodeError(f"invalid JSON ({exc}); a json table takes one JSON object per record, in UTF-8")
            decoded.errors.append(RecordError(row, error, schema_id))
            continue
        if not isinstance(value, dict):
            error = DecodeError(
                f"the value is a JSON {_kind(value)}, not an object: a json table stores one JSON object per "
                'record, so the producer must wrap the value in one (e.g. {"value": ...})'
            )
            decoded.errors.append(RecordError(row, error, schema_id))
            continue
        good_rows.append(row)
        good_texts.append(text)
    return good_rows, good_texts


def _conflicts(
    texts: list[bytes], schema: pa.Schema | None, known: pa.Schema | None
) -> tuple[list[tuple[int, str]], pa.Schema | None]:
    """By bisection, the positions of values whose types conflict with ``known`` or with the values before
    them (earlier values win), with the reader's reason; and ``schema`` grown by the values that fit."""
    if not texts:
        return [], schema
    try:
        table = _read(b"\n".join(texts), schema)
    except pa.ArrowInvalid as exc:
        if len(texts) == 1:
            return [(0, str(exc))], schema
        middle = len(texts) // 2
        left, schema = _conflicts(texts[:middle], schema, known)
        right, schema = _conflicts(texts[middle:], schema, known)
        return left + [(middle + index, reason) for index, reason in right], schema
    read = widened(table.schema, known)
    return [], read if schema is None else _grown(schema, read)


def _one_per_line(texts: Sequence[bytes]) -> Sequence[bytes]:
    """``texts`` without raw newlines (only whitespace in valid JSON), so joined they are one per line."""
    document = b"\n".join(texts)
    if document.count(b"\n") != len(texts) - 1 or b"\r" in document:
        return [text.replace(b"\n", b" ").replace(b"\r", b" ") for text in texts]
    return texts


def _kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _map_column(value: Any, known: pa.Schema | pa.DataType, path: str = "") -> str | None:
    """The first map column (by its path) that ``value``, a JSON object read with ``known``, carries a value for."""
    if value is None:
        return None
    if isinstance(known, pa.MapType):
        return path
    if isinstance(known, pa.Schema | pa.StructType) and isinstance(value, dict):
        found = (_map_column(value.get(f.name), f.type, f"{path}.{f.name}" if path else f.name) for f in known)
        return next((column for column in found if column), None)
    if isinstance(known, pa.ListType | pa.LargeListType) and isinstance(value, list):
        found = (_map_column(item, known.value_type, path) for item in value)
        return next((column for column in found if column), None)
    return None


def _conflict(reason: str, map_column: str | None = None) -> DecodeError:
    if map_column is not None:
        return DecodeError(
            f"column {map_column} is a map (its type comes from the table's JSON Schema), which a plain JSON "
            "record cannot fill; the producer must write this record in the Schema Registry wire format with "
            "its JSON Schema (e.g. confluent-kafka's JSONSerializer), or leave the field out"
        )
    return DecodeError(
        f"the JSON object does not fit the table's columns ({reason}); a field keeps the type it was first "
        "seen with (in the table, or earlier in the batch), so the producer must keep writing that JSON type"
    )


def _short_header(length: int) -> DecodeError:
    return DecodeError(
        f"value starts with byte 0 like the Confluent wire format but is {length} bytes, shorter than its 5-byte "
        "header (magic byte 0, 4-byte schema id); is the producer using the Schema Registry serializer?"
    )


_EMPTY = DecodeError(
    "empty value: a json table takes one JSON object per record; a deleted key is a tombstone (a null value), "
    "not an empty one"
)
