"""How a writer's schema meets the table's: the one place that decides schema evolution.

The table's schema is the union of every writer schema seen, with stable Iceberg field ids. Each field of a
decoded part (the Arrow schema ``tableflow.schema.avro`` or the JSON decoder made) is matched with the table's
column at the same path, by name or through the writer field's Avro aliases, and one rule applies
(``docs/schema-evolution.md`` lists them with their tests):

- no such column: add it, optional (nested fields too, also inside lists and maps); a field of type null has
  nothing to store and gets no column;
- the writer's type is wider (int→long, float→double, decimal precision widening at the same scale): promote;
- the writer's type is narrower (long→int, double→float, a smaller decimal precision): keep, the data is cast;
- the column is required and the writer's field is optional, or the writer lacks it: make the column optional;
- the column is missing from the writer: keep it, the writer's rows read null;
- the writer's field is new but aliases an existing column: rename that column (same field id), and remember
  the old name in the table property ``tableflow.field-aliases`` (``{"<field id>": ["old name", ...]}``) so rows
  of older writers, which still use the old name, land in the renamed column (``tableflow.ingest.align``);
- anything else (string→int, struct→primitive, a decimal's scale, a type Iceberg lacks): IncompatibleSchemaError,
  and those records follow the table's error policy; the table is not changed for them.

Changes are staged in an Iceberg transaction, so they are committed with the first data that needs them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
from pyiceberg.table import Table, Transaction
from pyiceberg.typedef import TableVersion
from pyiceberg.types import (
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    PrimitiveType,
    StructType,
)

from tableflow.errors import IncompatibleSchemaError
from tableflow.schema.avro import ALIASES_METADATA

ALIASES_PROPERTY = "tableflow.field-aliases"
"""Table property: field id → the names that column had before an Avro alias renamed it."""
FIELD_ID_METADATA = b"PARQUET:field_id"
"""Arrow field metadata pyiceberg's ``Schema.as_arrow()`` puts the Iceberg field id in."""

Path = tuple[str, ...]
Aliases = dict[int, list[str]]

_FIX = (
    "Iceberg cannot change a column's type this way (only int→long, float→double and decimal precision "
    "widening at the same scale), so this writer's records cannot go into the table: keep the field's type in "
    "the producer's schema, or write the new type under a new field name (the old column stays and reads null)"
)


def field_aliases(properties: Mapping[str, str]) -> Aliases:
    """The table's remembered old column names by field id (``ALIASES_PROPERTY``)."""
    text = properties.get(ALIASES_PROPERTY)
    return {} if not text else {int(key): list(names) for key, names in json.loads(text).items()}


def evolve(tx: Transaction, schema: pa.Schema) -> None:
    """Stage in ``tx`` what the table needs to hold rows of ``schema``; IncompatibleSchemaError when it cannot."""
    metadata = tx.table_metadata
    aliases = field_aliases(metadata.properties)
    plan = _Planner(aliases, metadata.format_version).plan(schema, metadata.schema().as_struct())
    if plan.renames:  # first, on their own: the other changes name columns by their new names
        with tx.update_schema() as update:
            for path, name in plan.renames:
                update.rename_column(path, name)
    if plan.adds or plan.promotions or plan.optional:
        with tx.update_schema() as update:
            for path, added in plan.adds:
                update.add_column(path, added)
            for path, promoted in plan.promotions:
                update.update_column(path, field_type=promoted)
            for path in plan.optional:
                update.make_column_optional(path)
    if plan.aliases:
        for field_id, names in plan.aliases.items():
            aliases[field_id] = [*aliases.get(field_id, []), *names]
        tx.set_properties({ALIASES_PROPERTY: json.dumps({str(k): v for k, v in sorted(aliases.items())})})


class SchemaView:
    """The table's schema as the pipeline will have made it: the table's, plus what buffered parts add.

    The worker checks each decoded part here before buffering it, so a part the table cannot hold follows the
    error policy instead of failing the commit. The view's transaction is never committed. It is rebuilt from
    the table at every (re)start; parts dropped uncommitted (a fenced batch) stay in it until then, which can
    only matter for two writer schemas that conflict with each other, one of which is refused either way.
    """

    def __init__(self, table: Table) -> None:
        self._tx = table.transaction()
        self._admitted: list[pa.Schema] = []

    def admit(self, schema: pa.Schema) -> None:
        """Add what rows of ``schema`` need to the view; IncompatibleSchemaError when the table cannot hold them."""
        if any(schema.equals(seen, check_metadata=True) for seen in self._admitted):
            return
        evolve(self._tx, schema)
        self._admitted.append(schema)


@dataclass
class _Plan:
    renames: list[tuple[Path, str]] = field(default_factory=list)  # current path → new name
    adds: list[tuple[Path, IcebergType]] = field(default_factory=list)  # paths after the renames
    promotions: list[tuple[Path, PrimitiveType]] = field(default_factory=list)
    optional: list[Path] = field(default_factory=list)
    aliases: Aliases = field(default_factory=dict)  # field id → old names to remember


class _Planner:
    """Walks a writer's Arrow schema against the table's Iceberg struct once, collecting the changes."""

    def __init__(self, aliases: Aliases, format_version: TableVersion) -> None:
        self._aliases = aliases
        self._convert = _ConvertToIcebergWithoutIDs(format_version=format_version)
        self._plan = _Plan()

    def plan(self, schema: pa.Schema, table: StructType) -> _Plan:
        self._struct(list(schema), table, (), ())
        return self._plan

    def _struct(self, fields: Sequence[pa.Field], table: StructType, current: Path, path: Path) -> None:
        """``current``: the struct's path in the table now; ``path``: after this plan's renames."""
        columns = {column.name: column for column in table.fields}
        written = {f.name for f in fields}
        matched: dict[int, str] = {}
        for writer_field in fields:
            column, new_name = self._match(writer_field, table, columns, written)
            if column is None:
                if _storable(writer_field.type):  # nothing to store: no column until it has a type
                    self._plan.adds.append(((*path, writer_field.name), self._iceberg(writer_field, path)))
                continue
            if column.field_id in matched:
                raise IncompatibleSchemaError(
                    _dotted((*path, column.name)),
                    str(column.field_type),
                    f"both {matched[column.field_id]} and {writer_field.name}",
                    "both names land in this column (one is a former name of it); drop one of the two fields",
                )
            matched[column.field_id] = writer_field.name
            if new_name is not None:
                self._plan.renames.append(((*current, column.name), new_name))
                self._plan.aliases.setdefault(column.field_id, []).append(column.name)
            name = new_name or column.name
            self._field(writer_field, column, (*current, column.name), (*path, name))
        for column in table.fields:
            if column.field_id not in matched and column.required:  # a writer dropped it: it reads null
                self._plan.optional.append((*path, column.name))

    def _match(
        self, writer_field: pa.Field, table: StructType, columns: dict[str, NestedField], written: set[str]
    ) -> tuple[NestedField | None, str | None]:
        """The column ``writer_field`` lands in, and the column's new name when an alias renames it."""
        if (column := columns.get(writer_field.name)) is not None:
            return column, None
        for column in table.fields:  # an older writer, still using a name the column had before a rename
            if writer_field.name in self._aliases.get(column.field_id, ()):
                return column, None
        for alias in _avro_aliases(writer_field):
            column = columns.get(alias)
            if column is not None and alias not in written:
                return column, writer_field.name
        return None, None

    def _field(self, writer_field: pa.Field, column: NestedField, current: Path, path: Path) -> None:
        if column.required and writer_field.nullable:
            self._plan.optional.append(path)
        self._type(writer_field, column.field_type, current, path)

    def _type(self, writer_field: pa.Field, table_type: IcebergType, current: Path, path: Path) -> None:
        writer_type = writer_field.type
        if not _storable(writer_type):
            return  # every value is null, which any optional column holds
        if pa.types.is_struct(writer_type) and isinstance(table_type, StructType):
            self._struct(list(writer_type), table_type, current, path)
        elif _is_list(writer_type) and isinstance(table_type, ListType):
            element = table_type.element_field
            self._field(writer_type.value_field, element, (*current, element.name), (*path, element.name))
        elif pa.types.is_map(writer_type) and isinstance(table_type, MapType):
            key, value = table_type.key_field, table_type.value_field
            self._type(writer_type.key_field, key.field_type, (*current, key.name), (*path, key.name))
            self._field(writer_type.item_field, value, (*current, value.name), (*path, value.name))
        elif not pa.types.is_nested(writer_type) and isinstance(table_type, PrimitiveType):
            self._primitive(self._iceberg(writer_field, path[:-1]), table_type, path)
        else:
            raise IncompatibleSchemaError(_dotted(path), str(table_type), str(self._describe(writer_field, path)), _FIX)

    def _primitive(self, writer: IcebergType, table: PrimitiveType, path: Path) -> None:
        if writer == table or _wider(table, writer):
            return  # the same, or the column is wider: the values are cast to it without loss
        if isinstance(writer, PrimitiveType) and _wider(writer, table):
            self._plan.promotions.append((path, writer))
            return
        raise IncompatibleSchemaError(_dotted(path), str(table), str(writer), _FIX)

    def _iceberg(self, writer_field: pa.Field, parent: Path) -> IcebergType:
        """The Iceberg type of a writer field (without its null-typed fields, which get no column)."""
        storable = _without_nulls(writer_field.type)
        try:
            converted = visit_pyarrow(storable, self._convert)
        except (TypeError, ValueError) as exc:
            raise IncompatibleSchemaError(
                _dotted((*parent, writer_field.name)),
                "(none yet)",
                str(writer_field.type),
                f"no Iceberg type of this table's format version holds it ({exc}); map the field to another "
                "type in the producer's schema",
            ) from exc
        assert isinstance(converted, IcebergType)  # a type converts to a type (a schema to a schema)
        return converted

    def _describe(self, writer_field: pa.Field, path: Path) -> IcebergType | pa.DataType:
        """The writer's type in Iceberg's words when it has one, for messages."""
        try:
            return self._iceberg(writer_field, path[:-1])
        except IncompatibleSchemaError:
            return writer_field.type


def _wider(wide: IcebergType, narrow: IcebergType) -> bool:
    """Whether Iceberg promotes ``narrow`` to ``wide`` (its only type changes besides keeping the type)."""
    if isinstance(narrow, IntegerType):
        return isinstance(wide, LongType)
    if isinstance(narrow, FloatType):
        return isinstance(wide, DoubleType)
    if isinstance(narrow, DecimalType) and isinstance(wide, DecimalType):
        return wide.scale == narrow.scale and wide.precision > narrow.precision
    return False


def _avro_aliases(writer_field: pa.Field) -> list[str]:
    text = (writer_field.metadata or {}).get(ALIASES_METADATA)
    return [] if text is None else [str(name) for name in json.loads(text)]


def _is_list(data_type: pa.DataType) -> bool:
    return isinstance(data_type, pa.ListType | pa.LargeListType)


def _storable(data_type: pa.DataType) -> bool:
    """Whether values of ``data_type`` can hold anything but null: not the null type, not a struct (or a list or
    map of them) whose members are all unstorable; those get no column (Parquet has no empty struct)."""
    if isinstance(data_type, pa.StructType):
        return any(_storable(child.type) for child in data_type)
    if _is_list(data_type):
        return _storable(data_type.value_type)
    if isinstance(data_type, pa.MapType):
        return _storable(data_type.item_type)
    return not pa.types.is_null(data_type)


def _without_nulls(data_type: pa.DataType) -> pa.DataType:
    """``data_type`` without the unstorable struct members, at any depth."""
    if isinstance(data_type, pa.StructType):
        return pa.struct([child.with_type(_without_nulls(child.type)) for child in data_type if _storable(child.type)])
    if isinstance(data_type, pa.ListType):
        return pa.list_(data_type.value_field.with_type(_without_nulls(data_type.value_type)))
    if isinstance(data_type, pa.LargeListType):
        return pa.large_list(data_type.value_field.with_type(_without_nulls(data_type.value_type)))
    if isinstance(data_type, pa.MapType):
        return pa.map_(data_type.key_type, data_type.item_field.with_type(_without_nulls(data_type.item_type)))
    return data_type


def _dotted(path: Path) -> str:
    return ".".join(path)
