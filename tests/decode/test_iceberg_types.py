"""The Arrow types the Avro mapping chooses land in Iceberg as the matching Iceberg types, values intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyiceberg.types import DecimalType, FixedType, TimestamptzType, TimeType, UUIDType

from tableflow.ingest.decode.avro import AvroDecoder
from tests.decode.conftest import Serialize, iceberg_table
from tests.decode.test_avro_types import CASES

NOT_IN_ICEBERG_V2 = {"null", "decimal-wide", "timestamp-nanos"}  # no v2 type: unknown, decimal(50), timestamp_ns

pytestmark = pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")  # the registry's parser


def test_every_mapped_type_round_trips_through_an_iceberg_table(
    tmp_path: Path, avro_values: Serialize, columnar: AvroDecoder
) -> None:
    names, defined = [], set[str]()
    for name in CASES:
        types = _named_types(CASES[name].avro)
        if name not in NOT_IN_ICEBERG_V2 and not types & defined:  # one record may define a name once
            names.append(name)
            defined |= types
    fields = [{"name": name.replace("-", "_"), "type": CASES[name].avro} for name in names]
    schema = {"type": "record", "name": "Everything", "fields": fields}
    record = {name.replace("-", "_"): CASES[name].values[0] for name in names}
    (part,) = columnar.decode(list(avro_values("iceberg-types", schema, [record]))).parts

    table = iceberg_table(tmp_path, "everything", part.table)

    iceberg = table.schema()
    assert isinstance(iceberg.find_type("uuid"), UUIDType)
    assert isinstance(iceberg.find_type("uuid_fixed"), UUIDType)
    assert isinstance(iceberg.find_type("timestamp_millis"), TimestamptzType)
    assert isinstance(iceberg.find_type("time_millis"), TimeType)
    assert iceberg.find_type("decimal_bytes") == DecimalType(10, 2)
    assert iceberg.find_type("fixed") == FixedType(4)
    assert all(not field.required for field in iceberg.fields)
    assert table.scan().to_arrow().to_pylist() == part.table.to_pylist()


def _named_types(avro: Any) -> set[str]:
    if isinstance(avro, list):
        return set().union(*map(_named_types, avro))
    if not isinstance(avro, dict):
        return set()
    inner = [avro.get("items"), avro.get("values"), *(field["type"] for field in avro.get("fields", []))]
    own = {avro["name"]} if avro["type"] in ("record", "enum", "fixed") else set()
    return own.union(*map(_named_types, inner))
