"""Fit decoded Arrow data to the table's Arrow schema: missing fields become nulls, types are cast.

Works through nested structs, lists and maps, so a record written with an older (or newer) writer schema
lands in the evolved table without a per-record step.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

_INT32 = pa.int32()


def align_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    if array.type == target:
        return array
    if pa.types.is_struct(target) and pa.types.is_struct(array.type):
        children = []
        names = {array.type.field(i).name for i in range(array.type.num_fields)}
        for i in range(target.num_fields):
            field = target.field(i)
            if field.name in names:
                children.append(align_array(array.field(field.name), field.type))
            else:
                children.append(pa.nulls(len(array), field.type))
        return pa.StructArray.from_arrays(
            children, fields=list(target), mask=array.is_null() if array.null_count else None
        )
    if pa.types.is_map(target) and pa.types.is_map(array.type):
        keys = align_array(array.keys, target.key_type)
        items = align_array(array.items, target.item_type)
        return pa.MapArray.from_arrays(_offsets(array), keys, items, type=target)
    if (pa.types.is_list(target) or pa.types.is_large_list(target)) and (
        pa.types.is_list(array.type) or pa.types.is_large_list(array.type)
    ):
        values = align_array(array.values, target.value_type)
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


def align_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    names = set(table.column_names)
    for field in schema:
        if field.name in names:
            column = table.column(field.name).combine_chunks()
            columns.append(align_array(column, field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)
