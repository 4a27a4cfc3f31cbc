"""Which decoder a table's ``format`` uses."""

from __future__ import annotations

import pyarrow as pa

from tableflow.config import TableSettings
from tableflow.ingest.decode import Decoder
from tableflow.ingest.decode.raw import RawDecoder
from tableflow.schema.registry import SchemaSource


def make_decoder(settings: TableSettings, source: SchemaSource, table_schema: pa.Schema) -> Decoder:
    """The decoder for ``settings.format``; JSON types start from the table's value columns so they stay stable."""
    if settings.format == "raw":
        return RawDecoder()
    if settings.format == "json":
        from tableflow.ingest.decode.json import JsonDecoder

        values = [field for field in table_schema if not field.name.startswith("_kafka_")]
        return JsonDecoder(known_schema=pa.schema(values) if values else None, source=source)
    from tableflow.ingest.decode.avro import AvroDecoder

    decoder = AvroDecoder(source)
    decoder.start_soon()  # while the consumer joins its group
    return decoder
