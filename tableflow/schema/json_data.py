"""The Arrow types of schemaless JSON: what pyarrow infers, made fit for a table that lives for years.

pyarrow's JSON reader infers ``int64``, ``double``, ``string``, ``bool``, structs and lists, and two types a
table must not get from inference: ``timestamp`` for strings that look like dates, which rewrites the text
(``2024-01-01T00:00:00Z`` becomes ``2024-01-01 00:00:00``) and fails on the next string that does not parse,
and ``null`` for fields that were null (or ``[]``, ``{}``) in every record of a batch, which no Iceberg type
matches. So inferred timestamps stay strings, and fields with nothing but nulls are left out until a batch
carries a value for them.
"""

from __future__ import annotations

import pyarrow as pa


def normalize(inferred: pa.Schema, known: pa.Schema | None) -> pa.Schema:
    """``inferred`` with timestamps as strings and null-only fields dropped, except where ``known`` (the
    schema the reader was told) already fixes a field's type."""
    known_fields = {} if known is None else {field.name: field.type for field in known}
    fields = [
        field.with_type(normalized)
        for field in inferred
        if (normalized := _normalize(field.type, known_fields.get(field.name))) is not None
    ]
    return pa.schema(fields)


def _normalize(inferred: pa.DataType, known: pa.DataType | None) -> pa.DataType | None:
    """The type to read a field as; None to leave the field out."""
    if known is not None and (inferred.equals(known) or not _nested(known)):
        return known
    if pa.types.is_timestamp(inferred):
        return pa.string()
    if pa.types.is_null(inferred):
        return None
    if pa.types.is_struct(inferred):
        known_children = {child.name: child.type for child in known} if isinstance(known, pa.StructType) else {}
        children = [
            child.with_type(normalized)
            for child in inferred
            if (normalized := _normalize(child.type, known_children.get(child.name))) is not None
        ]
        return pa.struct(children) if children else None
    if pa.types.is_list(inferred):
        known_item = known.value_type if isinstance(known, pa.ListType) else None
        item = _normalize(inferred.value_type, known_item)
        return None if item is None else pa.list_(inferred.value_field.with_type(item))
    return inferred


def _nested(data_type: pa.DataType) -> bool:
    return isinstance(data_type, pa.StructType | pa.ListType)


def widened(schema: pa.Schema, known: pa.Schema | None) -> pa.Schema:
    """``schema`` with int64 as double wherever ``known`` does not fix the type: a schema both kinds of JSON
    number fit, for checking which records conflict without making ``1`` and ``1.5`` conflict."""
    known_fields = {} if known is None else {field.name: field.type for field in known}
    return pa.schema([field.with_type(_widen(field.type, known_fields.get(field.name))) for field in schema])


def _widen(data_type: pa.DataType, known: pa.DataType | None) -> pa.DataType:
    if known is not None and not _nested(known):
        return data_type
    if pa.types.is_int64(data_type):
        return pa.float64()
    if isinstance(data_type, pa.StructType):
        known_children = {child.name: child.type for child in known} if isinstance(known, pa.StructType) else {}
        return pa.struct([child.with_type(_widen(child.type, known_children.get(child.name))) for child in data_type])
    if isinstance(data_type, pa.ListType):
        known_item = known.value_type if isinstance(known, pa.ListType) else None
        return pa.list_(data_type.value_field.with_type(_widen(data_type.value_type, known_item)))
    return data_type
