"""The offset-map contract and the buffer's position bookkeeping."""

from __future__ import annotations

import pyarrow as pa

from tableflow import offsets as om
from tableflow.ingest.align import align_table
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.records import before


def test_offset_map_round_trips_and_is_canonical() -> None:
    offsets = {"orders": {2: 10, 0: 5}, "a": {0: 1}}
    text = om.encode(offsets)
    assert text == '{"a":{"0":1},"orders":{"0":5,"2":10}}'
    assert om.decode(text) == {"a": {0: 1}, "orders": {0: 5, 2: 10}}


def test_merge_lays_updates_over_the_base() -> None:
    base = {"t": {0: 5, 1: 7}, "u": {0: 1}}
    assert om.merge(base, {"t": {1: 9, 2: 3}}) == {"t": {0: 5, 1: 9, 2: 3}, "u": {0: 1}}
    assert base == {"t": {0: 5, 1: 7}, "u": {0: 1}}


def _rows(partition: int, offsets: list[int]) -> pa.Table:
    return pa.table(
        {
            "_kafka_partition": pa.array([partition] * len(offsets), pa.int32()),
            "_kafka_offset": pa.array(offsets, pa.int64()),
        }
    )


def test_buffer_tracks_positions_and_its_successor_starts_where_it_ends() -> None:
    buffer = Buffer()
    buffer.assign(0, None)
    buffer.assign(1, 40)
    assert not buffer.due(0.0, 10, 10)
    buffer.add([_rows(0, [0, 1]), _rows(1, [40])], None, {0: 2, 1: 41}, size=30)
    assert buffer.advanced() == {0: 2, 1: 41}
    assert buffer.records == 3
    assert buffer.due(3600, 3, 10**9) and buffer.due(3600, 10, 30) and buffer.due(0.0, 10, 10**9)
    after = buffer.successor()
    assert after.advanced() == {} and after.records == 0 and after.parts == [] and after.started is None
    assert (after.ranges[0].base, after.ranges[1].base) == (2, 41)
    assert buffer.advanced() == {0: 2, 1: 41}, "the buffer in flight keeps what it commits"


def test_forgetting_a_partition_drops_its_rows() -> None:
    buffer = Buffer()
    buffer.assign(0, 0)
    buffer.assign(1, 0)
    buffer.add([pa.concat_tables([_rows(0, [0]), _rows(1, [0, 1])])], None, {0: 1, 1: 2}, size=3)
    buffer.forget([1])
    assert buffer.advanced() == {0: 1}
    assert buffer.parts[0]["_kafka_partition"].to_pylist() == [0]


def test_align_fills_missing_nested_fields_and_promotes_types() -> None:
    struct = pa.struct([("x", pa.int32())])
    table = pa.table(
        {
            "a": pa.array([1, None], pa.int32()),
            "s": pa.array([{"x": 1}, None], struct),
            "l": pa.array([[{"x": 2}], None], pa.list_(struct)),
            "m": pa.array([[("k", "v")], None], pa.map_(pa.large_string(), pa.large_string())),
        }
    )
    wide = pa.struct([("x", pa.int64()), ("y", pa.string())])
    target = pa.schema(
        [
            ("a", pa.int64()),
            ("s", wide),
            ("l", pa.large_list(wide)),
            ("m", pa.map_(pa.string(), pa.string())),
            ("new", pa.string()),
        ]
    )
    aligned = align_table(table, target)
    assert aligned.schema == target
    assert aligned.to_pylist() == [
        {"a": 1, "s": {"x": 1, "y": None}, "l": [{"x": 2, "y": None}], "m": [("k", "v")], "new": None},
        {"a": None, "s": None, "l": None, "m": None, "new": None},
    ]


def test_before_compares_each_row_with_its_partitions_position() -> None:
    rows = pa.table(
        {
            "_kafka_partition": pa.chunked_array([pa.array([0, 1, 2], pa.int32()), pa.array([1], pa.int32())]),
            "_kafka_offset": pa.chunked_array([pa.array([5, 5, 5]), pa.array([9])]),
        }
    )

    assert before(rows, {1: 6, 0: 5}, default=100).to_pylist() == [False, True, True, False]
    assert before(rows, {}, default=0).to_pylist() == [False] * 4
