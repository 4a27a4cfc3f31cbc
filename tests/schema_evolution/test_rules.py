"""Every row of docs/schema-evolution.md, proven: a v1 → v2 writer change as the table takes it.

Each case serializes v1 and v2 records with confluent-kafka's AvroSerializer against the embedded registry,
decodes them with the real decoder, and commits them through the real Committer into a SQLite-catalog table:
v1 rows, then v2 rows, then v1 rows again (an older producer still writing). The table's schema (names, types,
optionality, field ids) and the data of both versions are checked; an incompatible v2 is refused both by the
check the worker makes before buffering and at commit time, and the table is left as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema, index_by_name

from tableflow.config import TableSettings
from tableflow.errors import IncompatibleSchemaError
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.commit import Committer
from tableflow.ingest.decode.avro import AvroDecoder
from tableflow.ingest.records import MessageBatch
from tableflow.ingest.worker import _rows
from tableflow.schema.evolution import ALIASES_PROPERTY
from tests.decode.conftest import Serialize

DOC = Path(__file__).parents[2] / "docs" / "schema-evolution.md"

pytestmark = pytest.mark.filterwarnings("ignore::avro.errors.IgnoredLogicalType")  # the registry's parser


def _record(name: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": fields}


def _f(name: str, avro: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": avro, **extra}


def _decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


OPTIONAL_STRING = _f("email", ["null", "string"], default=None)
ID = _f("id", "int")


@dataclass(frozen=True)
class Case:
    """v1 → v2 of one record's fields; how rows of each read from the final table (value columns only)."""

    v1: list[dict[str, Any]]
    v2: list[dict[str, Any]]
    rows1: list[dict[str, Any]]
    rows2: list[dict[str, Any]]
    read1: list[dict[str, Any]]
    read2: list[dict[str, Any]] | None  # None: v2 is incompatible, its rows never reach the table
    types: dict[str, str] = field(default_factory=dict)  # column path → Iceberg type afterwards
    renamed: dict[str, str] = field(default_factory=dict)  # v1 column path → its path afterwards
    absent: tuple[str, ...] = ()  # column paths the table must not get
    error: str = ""  # for an incompatible v2: the field path the error names


def _address(*fields: dict[str, Any]) -> dict[str, Any]:
    return _record("Address", list(fields))


CASES: dict[str, Case] = {
    "add-field": Case(
        [ID], [ID, OPTIONAL_STRING], [{"id": 1}], [{"id": 2, "email": "a@example.com"}],
        [{"id": 1, "email": None}], [{"id": 2, "email": "a@example.com"}], types={"email": "string"},
    ),
    "add-nested-field": Case(
        [ID, _f("address", _address(_f("city", "string")))],
        [ID, _f("address", _address(_f("city", "string"), _f("zip", ["null", "string"], default=None)))],
        [{"id": 1, "address": {"city": "Oslo"}}], [{"id": 2, "address": {"city": "Bergen", "zip": "5003"}}],
        [{"id": 1, "address": {"city": "Oslo", "zip": None}}],
        [{"id": 2, "address": {"city": "Bergen", "zip": "5003"}}],
        types={"address.zip": "string"},
    ),
    "add-required-field-with-default": Case(
        [ID], [ID, _f("score", "int", default=0)], [{"id": 1}], [{"id": 2, "score": 7}],
        [{"id": 1, "score": None}], [{"id": 2, "score": 7}], types={"score": "int"},
    ),
    "int-to-long": Case(
        [_f("n", "int")], [_f("n", "long")], [{"n": 5}], [{"n": 2**40}], [{"n": 5}], [{"n": 2**40}],
        types={"n": "long"},
    ),
    "float-to-double": Case(
        [_f("x", "float")], [_f("x", "double")], [{"x": 1.5}], [{"x": 0.1}], [{"x": 1.5}], [{"x": 0.1}],
        types={"x": "double"},
    ),
    "decimal-widening": Case(
        [_f("price", _decimal(5, 2))], [_f("price", _decimal(10, 2))],
        [{"price": Decimal("123.45")}], [{"price": Decimal("12345678.90")}],
        [{"price": Decimal("123.45")}], [{"price": Decimal("12345678.90")}], types={"price": "decimal(10, 2)"},
    ),
    "promotion-in-array": Case(
        [_f("scores", {"type": "array", "items": "int"})], [_f("scores", {"type": "array", "items": "long"})],
        [{"scores": [1, 2]}], [{"scores": [2**40]}], [{"scores": [1, 2]}], [{"scores": [2**40]}],
        types={"scores.element": "long"},
    ),
    "required-to-optional": Case(
        [ID, _f("name", "string")], [ID, _f("name", ["null", "string"], default=None)],
        [{"id": 1, "name": "a"}], [{"id": 2, "name": None}],
        [{"id": 1, "name": "a"}], [{"id": 2, "name": None}], types={"name": "string"},
    ),
    "field-removed": Case(
        [ID, _f("name", "string")], [ID], [{"id": 1, "name": "a"}], [{"id": 2}],
        [{"id": 1, "name": "a"}], [{"id": 2, "name": None}], types={"name": "string"},
    ),
    "rename-via-alias": Case(
        [ID, _f("name", "string")], [ID, _f("full_name", "string", aliases=["name"])],
        [{"id": 1, "name": "a"}], [{"id": 2, "full_name": "b"}],
        [{"id": 1, "full_name": "a"}], [{"id": 2, "full_name": "b"}],
        types={"full_name": "string"}, renamed={"name": "full_name"}, absent=("name",),
    ),
    "nested-rename-via-alias": Case(
        [ID, _f("address", _address(_f("postcode", "string")))],
        [ID, _f("address", _address(_f("zip", "string", aliases=["postcode"])))],
        [{"id": 1, "address": {"postcode": "0150"}}], [{"id": 2, "address": {"zip": "5003"}}],
        [{"id": 1, "address": {"zip": "0150"}}], [{"id": 2, "address": {"zip": "5003"}}],
        renamed={"address.postcode": "address.zip"}, absent=("address.postcode",),
    ),
    "field-reordered": Case(
        [ID, _f("name", "string")], [_f("name", "string"), ID],
        [{"id": 1, "name": "a"}], [{"id": 2, "name": "b"}],
        [{"id": 1, "name": "a"}], [{"id": 2, "name": "b"}],
    ),
    "enum-symbol-added": Case(
        [_f("color", {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]})],
        [_f("color", {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]})],
        [{"color": "RED"}], [{"color": "BLUE"}], [{"color": "RED"}], [{"color": "BLUE"}], types={"color": "string"},
    ),
    "record-in-array-gains-field": Case(
        [_f("items", {"type": "array", "items": _record("Item", [_f("sku", "string")])})],
        [
            _f(
                "items",
                {"type": "array", "items": _record("Item", [_f("sku", "string"), _f("qty", ["null", "int"])])},
            )
        ],
        [{"items": [{"sku": "a"}]}], [{"items": [{"sku": "b", "qty": 3}]}],
        [{"items": [{"sku": "a", "qty": None}]}], [{"items": [{"sku": "b", "qty": 3}]}],
        types={"items.element.qty": "int"},
    ),
    "record-in-map-gains-field": Case(
        [_f("attrs", {"type": "map", "values": _record("Attr", [_f("a", "string")])})],
        [_f("attrs", {"type": "map", "values": _record("Attr", [_f("a", "string"), _f("b", ["null", "long"])])})],
        [{"attrs": {"k": {"a": "x"}}}], [{"attrs": {"k": {"a": "y", "b": 9}}}],
        [{"attrs": [("k", {"a": "x", "b": None})]}], [{"attrs": [("k", {"a": "y", "b": 9})]}],
        types={"attrs.value.b": "long"},
    ),
    "union-branch-added": Case(
        [_f("u", ["null", "int", "string"])], [_f("u", ["null", "int", "string", "boolean"])],
        [{"u": 5}], [{"u": True}],
        [{"u": {"int": 5, "string": None, "boolean": None}}], [{"u": {"int": None, "string": None, "boolean": True}}],
        types={"u.boolean": "boolean"},
    ),
    "null-field-added": Case(
        [ID], [ID, _f("nothing", "null")], [{"id": 1}], [{"id": 2, "nothing": None}],
        [{"id": 1}], [{"id": 2}], absent=("nothing",),
    ),
    "null-record-added": Case(
        [ID], [ID, _f("empty", _record("Empty", [_f("nothing", "null")]))], [{"id": 1}],
        [{"id": 2, "empty": {"nothing": None}}], [{"id": 1}], [{"id": 2}], absent=("empty",),
    ),
    "long-to-int": Case(
        [_f("n", "long")], [_f("n", "int")], [{"n": 2**40}], [{"n": 7}], [{"n": 2**40}], [{"n": 7}],
        types={"n": "long"},
    ),
    "double-to-float": Case(
        [_f("x", "double")], [_f("x", "float")], [{"x": 0.1}], [{"x": 0.5}], [{"x": 0.1}], [{"x": 0.5}],
        types={"x": "double"},
    ),
    "decimal-narrowing": Case(
        [_f("price", _decimal(10, 2))], [_f("price", _decimal(5, 2))],
        [{"price": Decimal("12345678.90")}], [{"price": Decimal("1.25")}],
        [{"price": Decimal("12345678.90")}], [{"price": Decimal("1.25")}], types={"price": "decimal(10, 2)"},
    ),
    "string-to-int": Case(
        [ID, _f("status", "string")], [ID, _f("status", "int")], [{"id": 1, "status": "ok"}], [{"id": 2, "status": 3}],
        [{"id": 1, "status": "ok"}], None, types={"status": "string"}, error="status",
    ),
    "struct-to-primitive": Case(
        [ID, _f("address", _address(_f("city", "string")))], [ID, _f("address", "string")],
        [{"id": 1, "address": {"city": "Oslo"}}], [{"id": 2, "address": "Oslo"}],
        [{"id": 1, "address": {"city": "Oslo"}}], None, error="address",
    ),
    "primitive-to-struct": Case(
        [ID, _f("address", "string")], [ID, _f("address", _address(_f("city", "string")))],
        [{"id": 1, "address": "Oslo"}], [{"id": 2, "address": {"city": "Oslo"}}],
        [{"id": 1, "address": "Oslo"}], None, types={"address": "string"}, error="address",
    ),
    "decimal-scale-change": Case(
        [_f("price", _decimal(10, 2))], [_f("price", _decimal(10, 3))],
        [{"price": Decimal("1.25")}], [{"price": Decimal("1.255")}],
        [{"price": Decimal("1.25")}], None, types={"price": "decimal(10, 2)"}, error="price",
    ),
    "int-to-double": Case(
        [_f("n", "int")], [_f("n", "double")], [{"n": 5}], [{"n": 2.5}], [{"n": 5}], None,
        types={"n": "int"}, error="n",
    ),
    "bytes-to-string": Case(
        [_f("b", "bytes")], [_f("b", "string")], [{"b": b"\x01"}], [{"b": "x"}], [{"b": b"\x01"}], None,
        types={"b": "binary"}, error="b",
    ),
    "nested-type-change": Case(
        [_f("address", _address(_f("zip", "int")))], [_f("address", _address(_f("zip", "string")))],
        [{"address": {"zip": 150}}], [{"address": {"zip": "0150"}}], [{"address": {"zip": 150}}], None,
        types={"address.zip": "int"}, error="address.zip",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> SqlCatalog:
    path = tmp_path_factory.mktemp("evolution")
    catalog = SqlCatalog("test", uri=f"sqlite:///{path / 'catalog.db'}", warehouse=f"file://{path}")
    catalog.create_namespace("evolution")
    return catalog


class _Table:
    """One case's table, fed the way the worker feeds it: decode → rows → admit → buffer → commit."""

    def __init__(self, catalog: SqlCatalog, name: str, decoder: AvroDecoder) -> None:
        settings = TableSettings(topic=f"evolution-{name}", table=f"evolution.{name.replace('-', '_')}")
        self.committer = Committer(catalog, settings)
        self.committer.ensure_table()
        self.topic = settings.topic
        self._decoder = decoder
        self.next = 0  # the next offset

    def rows(self, values: list[bytes]) -> list[pa.Table]:
        """The records as the worker buffers them, at the next offsets of partition 0."""
        batch = MessageBatch(
            self.topic, [0] * len(values), list(range(self.next, self.next + len(values))), [0] * len(values),
            [None] * len(values), list(values), [None] * len(values),
        )  # fmt: skip
        decoded = self._decoder.decode(batch.values)
        assert not decoded.errors, decoded.errors
        return _rows(decoded, batch.metadata())

    def commit(self, pieces: list[pa.Table], committer: Committer | None = None, skipped: int = 0) -> None:
        """Check the pieces as the worker does, then commit them (with ``committer``: no check, as a process
        that has not seen the table's latest schema), moving past ``skipped`` more records."""
        if committer is None:
            committer = self.committer
            for piece in pieces:
                committer.admit(piece.schema)
        buffer = Buffer()
        buffer.assign(0, self.next or None)
        end = self.next + sum(piece.num_rows for piece in pieces) + skipped
        buffer.add(pieces, None, {0: end}, 1)
        committer.commit(buffer)
        self.next = end

    def schema(self) -> Schema:
        return self.committer.ensure_table().schema()


@pytest.mark.parametrize("name", list(CASES))
def test_rule(
    name: str, catalog: SqlCatalog, client: SchemaRegistryClient, avro_values: Serialize, columnar: AvroDecoder
) -> None:
    case = CASES[name]
    subject = f"evolution-{name}"
    client.set_compatibility(f"{subject}-value", "NONE")  # the incompatible rows must be producible at all
    v1 = avro_values(subject, _record("Row", case.v1), case.rows1)
    v2 = avro_values(subject, _record("Row", case.v2), case.rows2)
    table = _Table(catalog, name, columnar)

    table.commit(table.rows(v1))
    before = table.schema()
    ids = {path: field_id for path, field_id in index_by_name(before).items() if not path.startswith("_kafka_")}
    snapshot = table.committer.ensure_table().metadata.current_snapshot()

    pieces = table.rows(v2)
    if case.read2 is None:
        with pytest.raises(IncompatibleSchemaError, match=rf"field {re.escape(case.error)}: the table's column is"):
            table.committer.admit(pieces[0].schema)  # the worker's check: the rows follow the error policy
        with pytest.raises(IncompatibleSchemaError):  # the commit refuses them too (another process's view)
            table.commit(pieces, Committer(catalog, table.committer.settings))
        assert table.schema() == before
        assert table.committer.ensure_table().metadata.current_snapshot() == snapshot
        table.commit([], skipped=len(v2))  # what the worker commits when they are dead-lettered
    else:
        snapshots = len(table.committer.ensure_table().metadata.snapshots)
        table.commit(pieces)
        metadata = table.committer.ensure_table().metadata
        snapshot = metadata.current_snapshot()
        assert snapshot is not None and len(metadata.snapshots) == snapshots + 1
        assert snapshot.schema_id == metadata.current_schema_id  # the change went in with the data needing it
    table.commit(table.rows(v1))  # an older producer still writing v1

    after = table.schema()
    names = index_by_name(after)
    for path, field_id in ids.items():  # stable field ids: every v1 column keeps its id (under its new name)
        assert names.get(case.renamed.get(path, path)) == field_id, path
    for path, type_name in case.types.items():
        assert str(after.find_type(path)) == type_name, path
    for path in case.absent:
        assert path not in names, path
    assert all(not f.required for f in after.fields if not f.name.startswith("_kafka_"))
    if case.renamed:
        assert ALIASES_PROPERTY in table.committer.ensure_table().properties

    data = table.committer.ensure_table().scan().to_arrow().sort_by("_kafka_offset")
    values = data.drop_columns([c for c in data.column_names if c.startswith("_kafka_")]).to_pylist()
    expected = case.read1 + (case.read2 or []) + case.read1
    assert values == expected
    skipped = range(len(v1), len(v1) + len(v2)) if case.read2 is None else range(0)
    assert data["_kafka_offset"].to_pylist() == [o for o in range(table.next) if o not in skipped]


def test_the_document_lists_exactly_the_tested_rules() -> None:
    """One row per rule in docs/schema-evolution.md, each naming its case here: neither can drift."""
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "`" in line.split("|")[-2]]
    documented = [re.findall(r"`([a-z0-9-]+)`", row.split("|")[-2])[0] for row in rows]
    assert len(documented) == len(set(documented)), "a case is documented twice"
    assert sorted(documented) == sorted(CASES)
    for name, case in CASES.items():
        row = next(row for row in rows if f"`{name}`" in row.split("|")[-2])
        outcome = row.split("|")[3]
        assert ("incompatible" in outcome.lower()) == (case.read2 is None), name
