"""``raw`` tables: the value bytes as they are, in ``_kafka_value``; nothing can fail to decode."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tableflow.ingest.decode import Decoded, DecodedPart
from tableflow.ingest.records import VALUE_COLUMN


class RawDecoder:
    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        table = pa.Table.from_arrays([pa.array(values, pa.binary())], schema=pa.schema([VALUE_COLUMN]))
        return Decoded(parts=[DecodedPart(table, range(len(values)))])

    def close(self) -> None:
        """Nothing to release."""
