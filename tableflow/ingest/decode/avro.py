"""Avro records in the Confluent wire format, decoded a batch at a time into Arrow.

A value is magic byte 0, a 4-byte big-endian schema id, then the Avro binary datum. A batch is grouped by
schema id, and each writer schema is fetched once per decoder and kept parsed.

Big groups are read by a columnar reader: the datums are framed as one block of an Avro object container file
held in memory, whose schema wraps the writer schema as ``{v: <writer schema>, m: fixed(8)}``, with a random
8-byte marker after every datum. The reader runs in a worker process (``_isolated``) because bytes that do not
line up with the schema can make it spin forever; when the rows come back, the marker in every row proves that
each datum was read exactly to its end. Any failure (reader error, panic, timeout, a marker out of place) sends
the group to the per-record path, which decodes each datum with fastavro: a datum that does not decode becomes
a ``RecordError``, and bytes after a datum are ignored as Confluent's own deserializer does. Small groups and
schemas the columnar reader cannot read (unions of several types, duration) always take that path. Both paths
produce the same Arrow types and values, those of ``tableflow.schema.avro``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import pyarrow as pa
import pyarrow.compute as pc

from tableflow.errors import DecodeError, SchemaError
from tableflow.ingest.decode import Decoded, DecodedPart, RecordError
from tableflow.ingest.decode._isolated import IsolatedReader, ReadFailed, ReadTimedOut
from tableflow.schema.avro import VALUE_COLUMN, AvroArrow, parse_avro
from tableflow.schema.registry import SchemaSource

logger = logging.getLogger(__name__)

COLUMNAR_MIN_ROWS = 500
"""Groups smaller than this are decoded in-process with fastavro, where the worker round trip would cost more
than it saves (measured with ``tests/bench/bench_decode.py``)."""

_HEADER_BYTES = 5
_MARKER_BYTES = 8
_TIMEOUT_SECONDS = 5.0
_TIMEOUT_ROWS_PER_SECOND = 50_000  # far below the reader's speed: only a hang runs into the timeout
_PAUSE_AFTER_TIMEOUT_SECONDS = 60.0
"""After a timeout a schema skips the columnar reader for this long: a producer that pads every record would
otherwise cost a timeout per batch."""


@dataclass
class _Writer:
    """A writer schema ready for both paths; ``container_header`` is None when it cannot be read columnar."""

    schema_id: int
    avro: AvroArrow
    container_header: bytes | None
    sync: bytes
    columnar_paused_until: float = 0.0


class AvroDecoder:
    """Decodes Confluent-framed Avro values; ``close()`` stops its columnar reader's worker process."""

    def __init__(
        self,
        source: SchemaSource,
        *,
        columnar_min_rows: int = COLUMNAR_MIN_ROWS,
        timeout_seconds: float = _TIMEOUT_SECONDS,
    ) -> None:
        self._source = source
        self._columnar_min_rows = columnar_min_rows
        self._timeout_seconds = timeout_seconds
        self._writers: dict[int, _Writer | DecodeError] = {}
        self._reader = IsolatedReader()

    @property
    def reader_pid(self) -> int | None:
        """The columnar reader's worker process id, None while it is not running."""
        return self._reader.pid

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """One part per schema id, in order of first appearance, then one part of tombstones.

        A tombstone has no schema id, so the tombstones of a batch form a part of their own, with no columns:
        every value column of those rows is null. SchemaError (the registry is unreachable) propagates.
        """
        decoded = Decoded()
        groups: dict[int, list[int]] = {}
        datums: dict[int, list[bytes]] = {}
        tombstones: list[int] = []
        for row, value in enumerate(values):
            if value is None:
                tombstones.append(row)
            elif len(value) >= _HEADER_BYTES and value[0] == 0:
                schema_id = int.from_bytes(value[1:_HEADER_BYTES], "big")
                if schema_id not in groups:
                    groups[schema_id], datums[schema_id] = [], []
                groups[schema_id].append(row)
                datums[schema_id].append(value[_HEADER_BYTES:])
            else:
                decoded.errors.append(RecordError(row, _framing_error(value)))
        for schema_id, rows in groups.items():
            self._decode_group(schema_id, rows, datums[schema_id], decoded)
        if tombstones:
            no_columns = pa.Table.from_struct_array(pa.nulls(len(tombstones), pa.struct([])))
            decoded.parts.append(DecodedPart(no_columns, tombstones))
        decoded.errors.sort(key=lambda error: error.row)
        return decoded

    def close(self) -> None:
        """Stop the worker process; the decoder starts a new one if it is used again."""
        self._reader.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _decode_group(self, schema_id: int, rows: list[int], datums: list[bytes], decoded: Decoded) -> None:
        try:
            writer = self._writer(schema_id)
        except DecodeError as exc:  # an id the registry does not know: maybe registered later, so not kept
            decoded.errors.extend(RecordError(row, exc, schema_id) for row in rows)
            return
        if isinstance(writer, DecodeError):
            decoded.errors.extend(RecordError(row, writer, schema_id) for row in rows)
            return
        table = self._columnar(writer, datums) if self._use_columnar(writer, len(rows)) else None
        if table is None:
            table, rows = self._per_record(writer, rows, datums, decoded)
        decoded.parts.append(DecodedPart(table, rows, schema_id))

    def _writer(self, schema_id: int) -> _Writer | DecodeError:
        """The writer schema by id, parsed once; a schema this table cannot use is kept as its DecodeError."""
        known = self._writers.get(schema_id)
        if known is None:
            known = self._writers[schema_id] = _prepare(schema_id, self._source)
        return known

    def _use_columnar(self, writer: _Writer, rows: int) -> bool:
        return (
            writer.container_header is not None
            and rows >= self._columnar_min_rows
            and time.monotonic() >= writer.columnar_paused_until
        )

    def _columnar(self, writer: _Writer, datums: list[bytes]) -> pa.Table | None:
        """The group read by the columnar reader, or None (logged) when the per-record path must do it."""
        try:
            return self._read_columnar(writer, datums)
        except ReadFailed as exc:
            logger.warning(
                "schema id %s: columnar read of %d records failed (%s); decoding them one by one",
                writer.schema_id,
                len(datums),
                exc,
            )
            return None

    def _read_columnar(self, writer: _Writer, datums: list[bytes]) -> pa.Table:
        assert writer.container_header is not None
        marker = os.urandom(_MARKER_BYTES)
        block = marker.join(datums) + marker
        container = b"".join((writer.container_header, _long(len(datums)), _long(len(block)), block, writer.sync))
        try:
            raw = self._reader.read(container, self._timeout_seconds + len(datums) / _TIMEOUT_ROWS_PER_SECOND)
        except ReadTimedOut:
            writer.columnar_paused_until = time.monotonic() + _PAUSE_AFTER_TIMEOUT_SECONDS
            raise
        if raw.num_rows != len(datums):
            raise ReadFailed(f"the reader returned {raw.num_rows} rows")
        if not pc.all(pc.equal(raw.column("m"), pa.scalar(marker, pa.binary(_MARKER_BYTES)))).as_py():
            raise ReadFailed("a datum's length does not match its schema")
        column = raw.column("v")
        table = pa.Table.from_struct_array(column) if writer.avro.record else pa.table({VALUE_COLUMN: column})
        try:
            return table.cast(writer.avro.schema)
        except pa.ArrowException as exc:
            raise ReadFailed(f"the reader's output does not cast to the table's types: {exc}") from exc

    def _per_record(
        self, writer: _Writer, rows: list[int], datums: list[bytes], decoded: Decoded
    ) -> tuple[pa.Table, list[int]]:
        """The group decoded datum by datum; the ones that fail become errors. Returns the table and its rows."""
        good: list[int] = []
        values: list[object] = []
        for row, datum in zip(rows, datums, strict=True):
            try:
                values.append(writer.avro.read(datum))
            except Exception as exc:  # noqa: BLE001 - fastavro raises all kinds for corrupt bytes
                decoded.errors.append(RecordError(row, _datum_error(exc, writer.schema_id), writer.schema_id))
            else:
                good.append(row)
        try:
            return writer.avro.to_table(values), good
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass  # some value does not fit its Arrow type: find which, one at a time
        fitting: list[int] = []
        fitting_values: list[object] = []
        for row, value in zip(good, values, strict=True):
            try:
                writer.avro.to_table([value])
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
                error = DecodeError(
                    f"a value in this record does not fit its column's type ({exc}); the producer wrote a "
                    f"value outside what writer schema id {writer.schema_id} declares"
                )
                decoded.errors.append(RecordError(row, error, writer.schema_id))
            else:
                fitting.append(row)
                fitting_values.append(value)
        return writer.avro.to_table(fitting_values), fitting


def _prepare(schema_id: int, source: SchemaSource) -> _Writer | DecodeError:
    """Fetch and parse a writer schema; DecodeError from the source (unknown id) and SchemaError propagate."""
    registered = source.get_schema(schema_id)
    schema_type = registered.schema_type.upper()
    if schema_type != "AVRO":
        hint = (
            "JSON Schema records belong in a table whose format is json"
            if schema_type == "JSON"
            else f"{schema_type} records are not supported"
        )
        return DecodeError(
            f"schema id {schema_id} is a {schema_type} schema, but this table's format is avro: its producers "
            f"must use the Schema Registry's Avro serializer ({hint})"
        )
    try:
        avro = parse_avro(registered.schema_str, f"writer schema id {schema_id}")
    except SchemaError as exc:
        return DecodeError(str(exc))
    sync = os.urandom(16)
    header = None
    if avro.columnar:
        framed = {
            "type": "record",
            "name": "__tableflow_frame",
            "fields": [
                {"name": "v", "type": json.loads(registered.schema_str)},
                {"name": "m", "type": {"type": "fixed", "name": "__tableflow_marker", "size": _MARKER_BYTES}},
            ],
        }
        header = _container_header(json.dumps(framed), sync)
    return _Writer(schema_id, avro, header, sync)


def _container_header(schema_json: str, sync: bytes) -> bytes:
    """An Avro object container file's header: magic, metadata map (schema, null codec), sync marker."""
    metadata = {b"avro.schema": schema_json.encode(), b"avro.codec": b"null"}
    entries = b"".join(_long(len(k)) + k + _long(len(v)) + v for k, v in metadata.items())
    return b"Obj\x01" + _long(len(metadata)) + entries + _long(0) + sync


def _long(value: int) -> bytes:
    """An Avro long: zig-zag, then base-128 varint."""
    encoded = (value << 1) ^ (value >> 63)
    out = bytearray()
    while encoded > 0x7F:
        out.append((encoded & 0x7F) | 0x80)
        encoded >>= 7
    out.append(encoded)
    return bytes(out)


def _framing_error(value: bytes) -> DecodeError:
    if not value:
        return DecodeError(
            "empty value (0 bytes) is not an Avro record in the Confluent wire format; a deleted key is a "
            "tombstone (a null value), not an empty one"
        )
    if value[0] != 0:
        looks_like = " (it looks like JSON: a table with format json takes it)" if value[:1] in b"{[" else ""
        return DecodeError(
            f"wrong magic byte 0x{value[0]:02x} (expected 0x00): the value is not in the Confluent wire "
            f"format{looks_like}; is the producer using the Schema Registry serializer?"
        )
    return DecodeError(
        f"value is {len(value)} bytes, shorter than the Confluent wire format's 5-byte header (magic byte 0, "
        "4-byte schema id); is the producer using the Schema Registry serializer?"
    )


_DATUM_PROBLEMS: dict[type[BaseException], str] = {
    EOFError: "Avro datum truncated",
    UnicodeDecodeError: "Avro string is not valid UTF-8",
    IndexError: "Avro datum is corrupt (an enum or union index out of range, or a number running past the end)",
}


def _datum_error(exc: Exception, schema_id: int) -> DecodeError:
    problem = next(
        (text for kind, text in _DATUM_PROBLEMS.items() if isinstance(exc, kind)),
        "Avro datum does not decode",
    )
    detail = str(exc) or type(exc).__name__
    return DecodeError(
        f"{problem}: {detail}; the datum does not match writer schema id {schema_id}, so check that the "
        "producer serializes with the schema whose id is in the record's header"
    )
