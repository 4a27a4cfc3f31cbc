"""The Confluent wire format (magic byte 0, 4-byte big-endian schema id, payload), found in a whole batch at once.

Both decoders start by sorting a batch's values into those with the 5-byte header (by schema id), the others,
and tombstones. That is done with Arrow kernels, not a Python loop over the records: at a million records a
second, a loop costs more than decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

HEADER_BYTES = 5


@dataclass(frozen=True)
class WireRows:
    """A batch's rows by how their values are framed; every row is in exactly one of the three."""

    array: pa.LargeBinaryArray  # the values, for further kernels
    by_schema_id: dict[int, list[int]]  # rows in the wire format, by schema id, in order of first appearance
    other: list[int]  # rows whose value is not in the wire format (empty, shorter than the header, no magic)
    tombstones: list[int]  # rows whose value is None


def wire_rows(values: Sequence[bytes | None]) -> WireRows:
    array = pa.array(values, pa.large_binary())
    framed = pc.and_(pc.greater_equal(pc.binary_length(array), HEADER_BYTES), pc.starts_with(array, pattern="\x00"))
    tombstones: list[int] = pc.indices_nonzero(array.is_null()).to_pylist() if array.null_count else []
    other: list[int] = pc.indices_nonzero(pc.invert(pc.fill_null(framed, True))).to_pylist()
    headers = pc.dictionary_encode(pc.if_else(framed, pc.binary_slice(array, 0, HEADER_BYTES), None))
    by_schema_id: dict[int, list[int]] = {}
    if len(headers.dictionary):
        # one stable sort groups the rows of each header, in the dictionary's order of first appearance
        order = pc.array_sort_indices(headers.indices, null_placement="at_end")
        start = 0
        counts = pc.value_counts(headers.indices.drop_null()).field("counts").to_pylist()
        for header, count in zip(headers.dictionary.to_pylist(), counts, strict=True):
            by_schema_id[int.from_bytes(header[1:], "big")] = order[start : start + count].to_pylist()
            start += count
    return WireRows(array, by_schema_id, other, tombstones)
