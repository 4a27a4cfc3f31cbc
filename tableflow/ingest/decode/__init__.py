"""Decoders turn a batch of Kafka message values into Arrow, many records per call.

A decoder is a small callable object: ``decoder.decode(values) -> Decoded``. It never raises for a bad
record: the record's index lands in ``errors`` with the reason, so the pipeline can dead-letter it and move on.
It raises only when nothing can be decoded for reasons outside the records (e.g. the registry is unreachable),
and then the batch is retried rather than dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from tableflow.errors import SchemaError


@dataclass(frozen=True)
class DecodedPart:
    """Records that share one writer schema: ``table`` row i is input record ``rows[i]``."""

    table: pa.Table
    rows: Sequence[int]
    schema_id: int | None = None


@dataclass(frozen=True)
class RecordError:
    """Why input record ``row`` could not be decoded (or, IncompatibleSchemaError, cannot join the table)."""

    row: int
    error: SchemaError
    schema_id: int | None = None


@dataclass
class Decoded:
    parts: list[DecodedPart] = field(default_factory=list)
    errors: list[RecordError] = field(default_factory=list)


class Decoder(Protocol):
    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode ``values`` (``None`` is a tombstone: a row whose value columns are all null)."""
        ...

    def close(self) -> None:
        """Release what the decoder holds (worker processes, caches)."""
        ...
