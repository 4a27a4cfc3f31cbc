"""Fit decoded Arrow data to the table's Arrow schema: missing fields become nulls, types are cast.

Works through nested structs, lists and maps, so a record written with an older (or newer) writer schema
lands in the evolved table without a per-record step. A column an Avro alias renamed takes an older writer's
field of its former name (``aliases``: field id → former names, see ``tableflow.schema.evolution``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tableflow.schema.evolution import FIELD_ID_METADATA

_INT32 = pa.int32()
_NO_ALIASES: Mapping[int, Sequence[str]] = {}


def _source(field: pa.Field, names: set[str], aliases: Mapping[int, Sequence[str]]) -> str | None:
    """The name under which the data has ``field``: its own, or a former one; None when it lacks it."""
    name: str = field.name
    if name in names:
        return name
    field_id = (field.metadata or {}).get(FIELD_ID_METADATA)
    former = aliases.get(int(field_id), ()) if field_id is not None and aliases else ()
    return next((old for old in former if old in names), None)


def align_array(array: pa.Array, target: pa.DataType, aliases: Mapping[int, Sequence[str]] = _NO_ALIASES) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_struct(target) and pa.types.is_struct(array.type):
        children = []
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        for i in range(target.num_fields):
            field = target.field(i)
            source = _source(field, names, aliases)
            if source is not None:
                children.append(align_array(array.field(source), field.type, aliases))
            else:
                children.append(pa.nulls(len(array), field.type))
        return pa.StructArray.from_arrays(
            children, fields=list(target), mask=array.is_null() if array.null_count else None
        )
    if pa.types.is_map(target) and pa.types.is_map(array.type):
        keys = align_array(array.keys, target.key_type, aliases)
        items = align_array(array.items, target.item_type, aliases)
        return pa.MapArray.from_arrays(_offsets(array), keys, items, type=target)
    if (pa.types.is_list(target) or pa.types.is_large_list(target)) and (
        pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
    ):
        values = align_array(array.values, target.value_type, aliases)
        if pa.types.is_large_list(target):
            return pa.LargeListArray.from_arrays(_offsets(array, pa.int64()), values, type=target)
        return pa.ListArray.from_arrays(_offsets(array), values, type=target)
    return array.cast(target)


def _offsets(array: pa.Array, kind: pa.DataType = _INT32) -> pa.Array:
    """List/map offsets with nulls carried in, so null lists stay null (not empty)."""
    offsets = array.offsets.cast(kind)
    if array.null_count == 0:
        return offsets
    # A null at position i is expressed as a null offset at i (Arrow's from_arrays convention).
    mask = pa.concat_arrays([array.is_null(), pa.array([False])])
    return pc.if_else(mask, pa.nulls(len(offsets), kind), offsets)


def align_table(table: pa.Table, schema: pa.Schema, aliases: Mapping[int, Sequence[str]] = _NO_ALIASES) -> pa.Table:
    columns = []
    names = set(table.column_names)
    for field in schema:
        source = _source(field, names, aliases)
        if source is not None:
            column = table.column(source).combine_chunks()
            columns.append(align_array(column, field.type, aliases))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
