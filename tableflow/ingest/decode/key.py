"""Record keys decoded into ``_kafka_key_decoded``, beside the raw bytes ``_kafka_key`` always keeps.

A table's ``key_format`` says how: ``string`` (UTF-8, as confluent-kafka's StringSerializer writes) becomes a
string; ``avro`` and ``json`` keys are decoded by the value decoders (Schema Registry wire format; plain JSON
objects too), and their writer schema is mapped as a value's is: a record (object) becomes a struct, any other
schema its own type. Keys of several schemas in one batch share one column type, the union of their fields
(a field of different types in two schemas makes the later schema's keys errors in that batch). A
null key reads null. A key that does not decode makes its record an error (the table's error policy applies),
with a message that says it was the key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import pyarrow as pa

from tableflow.errors import DecodeError
from tableflow.ingest.align import align_array
from tableflow.ingest.decode import Decoded, DecodedPart, Decoder, RecordError
from tableflow.schema.avro import parse_avro
from tableflow.schema.json_schema import parse_json_schema
from tableflow.schema.registry import SchemaSource

KEY_COLUMN = "_kafka_key_decoded"

KeyFormat = Literal["binary", "string", "avro", "json"]


class KeyDecoder:
    """Adds ``KEY_COLUMN`` to a batch's decoded parts (``attach``); a no-op for ``binary`` keys.

    Avro keys take the per-record path: keys are small, and the columnar reader's worker process would need
    its own lifecycle in the worker for little gain.
    """

    def __init__(self, key_format: KeyFormat, source: SchemaSource, table_schema: pa.Schema | None = None) -> None:
        """``table_schema``: the table's, so plain JSON keys keep the types their column has (as values do)."""
        self._format = key_format
        self._source = source
        self._decoder: Decoder | None = None
        if key_format == "avro":  # imported here, as in ``factory``: only tables that use them pay for them
            from tableflow.ingest.decode.avro import AvroDecoder

            self._decoder = AvroDecoder(source, columnar_min_rows=2**62)
        elif key_format == "json":
            from tableflow.ingest.decode.json import JsonDecoder

            self._decoder = JsonDecoder(known_schema=_key_fields(table_schema), source=source)
        self._records: dict[int, bool] = {}  # schema id → whether it maps to a struct

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()

    def attach(self, decoded: Decoded, keys: Sequence[bytes | None]) -> Decoded:
        """``decoded`` (the values) with the keys' column on every part; a record whose key fails is an error."""
        if self._format == "binary":
            return decoded
        column, errors = self._string(keys) if self._decoder is None else self._structured(self._decoder, keys)
        failed = {error.row for error in decoded.errors}
        key_errors = [error for error in errors if error.row not in failed]
        if not key_errors and column is None:
            return decoded
        bad = {error.row for error in key_errors}
        parts = []
        for part in decoded.parts:
            table, rows = part.table, part.rows
            if bad and not bad.isdisjoint(rows):
                kept = [index for index, row in enumerate(rows) if row not in bad]
                table, rows = table.take(pa.array(kept, pa.int64())), [rows[index] for index in kept]
            if column is not None:
                table = table.append_column(KEY_COLUMN, column.take(pa.array(rows, pa.int64())))
            parts.append(DecodedPart(table, rows, part.schema_id))
        all_errors = sorted([*decoded.errors, *key_errors], key=lambda error: error.row)
        return Decoded(parts, all_errors)

    def _string(self, keys: Sequence[bytes | None]) -> tuple[pa.Array, list[RecordError]]:
        raw = pa.array(keys, pa.binary())
        try:
            return raw.cast(pa.string()), []
        except pa.ArrowInvalid:
            pass
        errors: list[RecordError] = []
        texts: list[str | None] = []
        for row, key in enumerate(keys):
            try:
                texts.append(None if key is None else key.decode())
            except UnicodeDecodeError as exc:
                texts.append(None)
                error = DecodeError(f"the record's key is not UTF-8 text ({exc}), but the table's key_format is string")
                errors.append(RecordError(row, error))
        return pa.array(texts, pa.string()), errors

    def _structured(self, decoder: Decoder, keys: Sequence[bytes | None]) -> tuple[pa.Array | None, list[RecordError]]:
        """The keys through the value decoder; each part's key column, in one type, back in batch order."""
        present = [row for row, key in enumerate(keys) if key is not None]
        decoded = decoder.decode([keys[row] for row in present])
        errors = [
            RecordError(present[error.row], _key_error(error, self._format), error.schema_id)
            for error in decoded.errors
        ]
        pieces: list[tuple[list[int], pa.Array]] = []
        target: pa.DataType | None = None
        for part in decoded.parts:
            array = self._column(part)
            rows = [present[row] for row in part.rows]
            try:
                merged = array.type if target is None else _union(target, array.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                error = DecodeError(
                    f"the record's key (schema id {part.schema_id}) has type {array.type}, which cannot share the "
                    f"column {KEY_COLUMN} with the type {target} of other keys in the batch ({exc})"
                )
                errors.extend(RecordError(row, error, part.schema_id) for row in rows)
                continue
            target = merged
            pieces.append((rows, array))
        if target is None or pa.types.is_null(target):
            return None, errors
        stacked = pa.concat_arrays([*(align_array(array, target) for _, array in pieces), pa.nulls(1, target)])
        order = [len(stacked) - 1] * len(keys)  # where each row's key is in ``stacked``: null unless a piece has it
        start = 0
        for rows, array in pieces:
            for index, row in enumerate(rows, start):
                order[row] = index
            start += len(array)
        return stacked.take(pa.array(order, pa.int64())), errors

    def _column(self, part: DecodedPart) -> pa.Array:
        """A part's key: its columns as a struct for a record schema, else its one column."""
        table = part.table
        if not self._record(part.schema_id):
            return table.column(0).combine_chunks()
        if not table.num_columns:
            return pa.nulls(table.num_rows)
        columns = [column.combine_chunks() for column in table.columns]
        return pa.StructArray.from_arrays(columns, fields=list(table.schema))

    def _record(self, schema_id: int | None) -> bool:
        """Whether keys of this schema are records; the decoder has fetched and mapped it, so this cannot fail."""
        if schema_id is None:
            return True  # plain JSON objects
        if schema_id not in self._records:
            registered = self._source.get_schema(schema_id)
            label = f"key schema id {schema_id}"
            if self._format == "avro":
                self._records[schema_id] = parse_avro(registered.schema_str, label).record
            else:
                mapped = parse_json_schema(registered.schema_str, label)
                self._records[schema_id] = mapped is None or mapped.record
        return self._records[schema_id]


def _key_fields(table_schema: pa.Schema | None) -> pa.Schema | None:
    """The fields of the table's key column when it is a struct (plain JSON keys are objects)."""
    if table_schema is None or KEY_COLUMN not in table_schema.names:
        return None
    column: pa.DataType = table_schema.field(KEY_COLUMN).type
    return pa.schema(list(column)) if pa.types.is_struct(column) else None


def _union(known: pa.DataType, other: pa.DataType) -> pa.DataType:
    """One type for keys of both types: struct fields merged, nulls take the other type; ArrowTypeError when
    none. Numbers are not widened here (int64 and double would make a double no long column can take): schema
    evolution does that across batches, by its rules."""
    schemas = [pa.schema([pa.field(KEY_COLUMN, known)]), pa.schema([pa.field(KEY_COLUMN, other)])]
    union: pa.DataType = pa.unify_schemas(schemas).field(KEY_COLUMN).type
    return union


def _key_error(error: RecordError, key_format: str) -> DecodeError:
    return DecodeError(f"the record's key does not decode (key_format {key_format}): {error.error}")
