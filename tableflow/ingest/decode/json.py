"""Schemaless JSON objects, one per record, decoded a batch at a time with pyarrow's JSON reader.

The batch's values are joined into one newline-delimited document and read in one call. A raw newline can only
be whitespace in valid JSON (inside strings it must be escaped), so newlines inside a value, as in
pretty-printed JSON, become spaces first. Types follow ``known_schema`` (the table's value columns) where it
has the field, and are inferred for new fields; ``known_schema`` then grows by what the batch added, so a
field keeps the type it was first seen with. When the bulk read fails, each value is checked on its own
(invalid JSON, not an object) and the rest is bisected to find the records whose types conflict with the
schema; exactly those become errors and the others are still read in bulk.

Values in the Confluent JSON Schema wire format (magic byte 0, 4-byte schema id, JSON) are accepted too: no
JSON text starts with byte 0, so such a value loses its 5-byte header and its part carries the schema id. The
JSON Schema itself is not consulted yet: types are inferred from the data either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import cast

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from tableflow.errors import DecodeError, SchemaError
from tableflow.ingest.decode import Decoded, DecodedPart, RecordError
from tableflow.ingest.decode._wire import HEADER_BYTES, wire_rows
from tableflow.schema.json_data import normalize, widened

_TOMBSTONE = b"{}"  # an object without fields: a row whose value columns are all null


class JsonDecoder:
    """Decodes JSON object values into tables whose types stay stable across batches.

    ``known_schema`` is the value columns' types (no ``_kafka_*`` columns): set it to the table's when the
    pipeline starts, and the decoder keeps it up to date with the fields later batches add. SchemaError when
    a column of it has a type JSON cannot fill (a map, a uuid): nothing in the batch could be decoded.
    """

    def __init__(self, known_schema: pa.Schema | None = None) -> None:
        self.known_schema = known_schema

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
        document = b"\n".join(texts)
        if document.count(b"\n") != len(texts) - 1 or b"\r" in document:
            texts = [_one_line(text) for text in texts]
            document = b"\n".join(texts)
        try:
            table = _read(document, self.known_schema)
        except pa.ArrowInvalid:
            table = None
        if table is None or table.num_rows != len(texts):  # more rows: some value held several objects
            rows, texts = _check_each(schema_id, rows, texts, decoded)
            conflicts, _ = _conflicts(texts, self.known_schema, self.known_schema)
            for index, reason in conflicts:
                decoded.errors.append(RecordError(rows[index], _conflict(reason), schema_id))
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


def _true(mask: pa.Array) -> list[int]:
    """The rows where ``mask`` is true (not null)."""
    rows: list[int] = pc.indices_nonzero(pc.fill_null(mask, False)).to_pylist()
    return rows


def _read(document: bytes, known: pa.Schema | None) -> pa.Table:
    """Newline-delimited JSON as a table: ``known``'s types, inferred ones (normalized) for new fields.

    pyarrow's ArrowInvalid means the data does not fit; a column type JSON cannot fill is a SchemaError.
    """
    try:
        options = pa_json.ParseOptions(explicit_schema=known, unexpected_field_behavior="infer")
        table = pa_json.read_json(pa.BufferReader(document), parse_options=options)
        schema = normalize(table.schema, known)
        if schema.equals(table.schema):
            return table
        options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
        return pa_json.read_json(pa.BufferReader(document), parse_options=options)
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(
            f"the table's columns cannot be read from JSON ({exc}); a json table's columns take JSON's types "
            "(string, int64, double, boolean, struct, list, and types parsed from strings such as timestamps)"
        ) from exc


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


def _one_line(text: bytes) -> bytes:
    return text.replace(b"\n", b" ").replace(b"\r", b" ")


def _kind(value: object) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _conflict(reason: str) -> DecodeError:
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
