"""Avro records in the Confluent wire format, decoded a batch at a time into Arrow.

A value is magic byte 0, a 4-byte big-endian schema id, then the Avro binary datum. The batch is grouped by
schema id (``_wire``), and each writer schema is fetched once per decoder and kept parsed.

Big groups go to the columnar reader, which runs in a worker process (``_isolated``: why, and how it proves
that every datum was read exactly to its end). When it fails (reader error, panic, timeout, a datum read short
or long), the group is halved and each half read again, down to groups too small for the columnar reader,
which take the per-record path: fastavro, datum by datum, where a datum that does not decode becomes a
``RecordError`` and bytes after a datum are ignored, as Confluent's own deserializer does. Schemas the columnar
reader cannot read the way the table stores them always take that path. Both paths produce the same Arrow
types and values: those of ``tableflow.schema.avro``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self, cast

import pyarrow as pa

from tableflow.errors import DecodeError, SchemaError
from tableflow.ingest.decode import Decoded, DecodedPart, RecordError
from tableflow.ingest.decode._isolated import Framing, IsolatedReader, ReadFailed, ReadTimedOut, framing
from tableflow.ingest.decode._wire import HEADER_BYTES, wire_rows
from tableflow.schema.avro import AvroArrow, parse_avro
from tableflow.schema.registry import SchemaSource

logger = logging.getLogger(__name__)

COLUMNAR_MIN_ROWS = 100
"""Groups smaller than this are decoded in-process with fastavro: measured with ``tests/bench/bench_decode.py``,
the worker round trip starts to pay at about 100 order events."""

_TIMEOUT_SECONDS = 5.0
_TIMEOUT_ROWS_PER_SECOND = 50_000  # far below the reader's speed: only a hang runs into the timeout
_PAUSE_AFTER_TIMEOUT_SECONDS = 60.0
"""After a timeout a schema skips the columnar reader for this long, so input that makes the reader hang costs
one timeout a minute, not one per batch (and per halving)."""


@dataclass
class _Writer:
    """A writer schema ready for both paths; ``framing`` is None when the columnar reader cannot read it."""

    schema_id: int
    avro: AvroArrow
    framing: Framing | None
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

    def start_soon(self) -> None:
        """Start the columnar reader's worker process in the background (see ``IsolatedReader.start_soon``)."""
        self._reader.start_soon()

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
        rows = wire_rows(values)
        present = cast("Sequence[bytes]", values)  # the rows below are never tombstones
        for schema_id, group_rows in rows.by_schema_id.items():
            group = present if len(group_rows) == len(values) else [present[row] for row in group_rows]
            self._decode_group(schema_id, group_rows, group, decoded)
        decoded.errors.extend(RecordError(row, _framing_error(present[row])) for row in rows.other)
        if rows.tombstones:
            no_columns = pa.Table.from_struct_array(pa.nulls(len(rows.tombstones), pa.struct([])))
            decoded.parts.append(DecodedPart(no_columns, rows.tombstones))
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

    def _decode_group(self, schema_id: int, rows: list[int], values: Sequence[bytes], decoded: Decoded) -> None:
        try:
            writer = self._writer(schema_id)
        except DecodeError as exc:  # an id the registry does not know: maybe registered later, so not kept
            decoded.errors.extend(RecordError(row, exc, schema_id) for row in rows)
            return
        if isinstance(writer, DecodeError):
            decoded.errors.extend(RecordError(row, writer, schema_id) for row in rows)
            return
        pieces = self._decode_rows(writer, rows, values, decoded, top=True)
        if len(pieces) == 1:
            table, kept = pieces[0]
        else:
            table = pa.concat_tables(table for table, _ in pieces)
            kept = [row for _, piece_rows in pieces for row in piece_rows]
        if kept:
            decoded.parts.append(DecodedPart(table, kept, schema_id))

    def _decode_rows(
        self, writer: _Writer, rows: list[int], values: Sequence[bytes], decoded: Decoded, *, top: bool = False
    ) -> list[tuple[pa.Table, list[int]]]:
        """Tables with the rows they hold, in row order: columnar where it works, else record by record.

        When the columnar reader fails on a group, the group is halved and each half tried again, so a few bad
        records cost a few more columnar reads (about 2 log2(n) per bad record) rather than the whole group
        going through the per-record path, which is 20-30x slower.
        """
        if self._use_columnar(writer, len(rows)):
            try:
                return [(self._columnar(writer, values), rows)]
            except ReadFailed as exc:
                logger.log(
                    logging.WARNING if top else logging.DEBUG,
                    "schema id %s: columnar read of %d records failed (%s); looking for the bad records",
                    writer.schema_id,
                    len(rows),
                    exc,
                )
            if len(rows) >= 2 * self._columnar_min_rows:
                middle = len(rows) // 2
                return [
                    *self._decode_rows(writer, rows[:middle], values[:middle], decoded),
                    *self._decode_rows(writer, rows[middle:], values[middle:], decoded),
                ]
        return [self._per_record(writer, rows, values, decoded)]

    def _writer(self, schema_id: int) -> _Writer | DecodeError:
        """The writer schema by id, parsed once; a schema this table cannot use is kept as its DecodeError."""
        known = self._writers.get(schema_id)
        if known is None:
            known = self._writers[schema_id] = _prepare(schema_id, self._source)
        return known

    def _use_columnar(self, writer: _Writer, rows: int) -> bool:
        return (
            writer.framing is not None
            and rows >= self._columnar_min_rows
            and time.monotonic() >= writer.columnar_paused_until
        )

    def _columnar(self, writer: _Writer, values: Sequence[bytes]) -> pa.Table:
        """The values read by the columnar reader; ReadFailed when it cannot."""
        assert writer.framing is not None
        timeout = self._timeout_seconds + len(values) / _TIMEOUT_ROWS_PER_SECOND
        try:
            return self._reader.read(writer.framing, values, timeout)
        except ReadTimedOut:
            writer.columnar_paused_until = time.monotonic() + _PAUSE_AFTER_TIMEOUT_SECONDS
            logger.warning(
                "schema id %s: the columnar reader hung and was killed; records of this schema are decoded one "
                "by one for %.0f s",
                writer.schema_id,
                _PAUSE_AFTER_TIMEOUT_SECONDS,
            )
            raise

    def _per_record(
        self, writer: _Writer, rows: list[int], values: Sequence[bytes], decoded: Decoded
    ) -> tuple[pa.Table, list[int]]:
        """The group decoded datum by datum; the ones that fail become errors. Returns the table and its rows."""
        good: list[int] = []
        records: list[object] = []
        for row, value in zip(rows, values, strict=True):
            try:
                records.append(writer.avro.read(value[HEADER_BYTES:]))
            except Exception as exc:  # noqa: BLE001 - fastavro raises all kinds for corrupt bytes
                decoded.errors.append(RecordError(row, _datum_error(exc, writer.schema_id), writer.schema_id))
            else:
                good.append(row)
        try:
            return writer.avro.to_table(records), good
        except (pa.ArrowException, OverflowError, ValueError, TypeError):
            pass  # some value does not fit its Arrow type: find which, one at a time
        fitting: list[int] = []
        fitting_records: list[object] = []
        for row, record in zip(good, records, strict=True):
            try:
                writer.avro.to_table([record])
            except (pa.ArrowException, OverflowError, ValueError, TypeError) as exc:
                error = DecodeError(
                    f"a value in this record does not fit its column's type ({exc}); the producer wrote a "
                    f"value outside what writer schema id {writer.schema_id} declares"
                )
                decoded.errors.append(RecordError(row, error, writer.schema_id))
            else:
                fitting.append(row)
                fitting_records.append(record)
        return writer.avro.to_table(fitting_records), fitting


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
    columnar = framing(json.loads(registered.schema_str), avro.schema, avro.record) if avro.columnar else None
    return _Writer(schema_id, avro, columnar)


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
    EOFError: "Avro datum truncated: the value ends before the writer schema says the record does",
    UnicodeDecodeError: "Avro string is not valid UTF-8",
    IndexError: "Avro datum is corrupt: an enum or union index is out of range, or a number runs past the end",
}


def _datum_error(exc: Exception, schema_id: int) -> DecodeError:
    problem = next(
        (text for kind, text in _DATUM_PROBLEMS.items() if isinstance(exc, kind)),
        f"Avro datum does not decode ({type(exc).__name__})",
    )
    detail = f" ({exc})" if str(exc) else ""
    return DecodeError(
        f"{problem}{detail}; the datum does not match writer schema id {schema_id}, so check that the "
        "producer serializes with the schema whose id is in the record's header"
    )
