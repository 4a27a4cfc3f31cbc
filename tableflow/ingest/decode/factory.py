"""Which decoder a table's ``format`` uses."""

from __future__ import annotations

from tableflow.config import TableSettings
from tableflow.ingest.decode import Decoder
from tableflow.ingest.decode.raw import RawDecoder
from tableflow.schema.registry import SchemaSource


def make_decoder(settings: TableSettings, source: SchemaSource) -> Decoder:
    if settings.format == "raw":
        return RawDecoder()
    if settings.format == "json":
        from tableflow.ingest.decode.json import JsonDecoder

        return JsonDecoder()
    from tableflow.ingest.decode.avro import AvroDecoder

    return AvroDecoder(source)
