"""Kafka metadata columns (a contract: outside tools query them by these names) and batch extraction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Message

TIMESTAMP = pa.timestamp("us", tz="UTC")
HEADERS = pa.list_(pa.struct([pa.field("key", pa.string()), pa.field("value", pa.binary())]))

METADATA_SCHEMA = pa.schema(
    [
        pa.field("_kafka_topic", pa.string(), nullable=False),
        pa.field("_kafka_partition", pa.int32(), nullable=False),
        pa.field("_kafka_offset", pa.int64(), nullable=False),
        pa.field("_kafka_timestamp", TIMESTAMP, nullable=False),
        pa.field("_kafka_key", pa.binary()),
        pa.field("_kafka_headers", HEADERS),
    ]
)
VALUE_COLUMN = pa.field("_kafka_value", pa.binary())
"""``raw`` tables keep the value bytes here instead of value columns; dead-letter tables keep them too."""


@dataclass(frozen=True)
class MessageBatch:
    """The columns of one consumed batch, pulled out of librdkafka's messages once."""

    topic: str
    partitions: list[int]
    offsets: list[int]
    timestamps_ms: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[list[tuple[str, bytes | None]] | None]

    @classmethod
    def from_messages(cls, topic: str, messages: Sequence[Message]) -> MessageBatch:
        partitions, offsets, timestamps, keys, values, headers = [], [], [], [], [], []
        for message in messages:
            partitions.append(message.partition())
            offsets.append(message.offset())
            timestamps.append(message.timestamp()[1])
            keys.append(message.key())
            values.append(message.value())
            headers.append(message.headers())
        return cls(topic, partitions, offsets, timestamps, keys, values, headers)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.offsets)

    def value_bytes(self) -> int:
        return sum(map(len, filter(None, self.values)))  # None (a tombstone) and b"" both add nothing

    def metadata(self) -> pa.Table:
        """The ``_kafka_*`` columns for every record of the batch, in batch order."""
        n = len(self.offsets)
        headers = [None if h is None else [{"key": k, "value": v} for k, v in h] for h in self.headers]
        return pa.Table.from_arrays(
            [
                pa.array([self.topic] * n, pa.string()),
                pa.array(self.partitions, pa.int32()),
                pa.array(self.offsets, pa.int64()),
                pa.array(self.timestamps_ms, pa.timestamp("ms", tz="UTC")).cast(TIMESTAMP),
                pa.array(self.keys, pa.binary()),
                pa.array(headers, HEADERS),
            ],
            schema=METADATA_SCHEMA,
        )


def before(rows: pa.Table, positions: Mapping[int, int], default: int) -> pa.ChunkedArray:
    """Which ``rows`` lie before their partition's position (``default`` for a partition ``positions`` lacks),
    by their ``_kafka_partition`` and ``_kafka_offset`` columns; vectorized, one lookup per row."""
    partitions = pa.array(list(positions), rows["_kafka_partition"].type)
    limits = pa.array([*positions.values(), default], pa.int64())
    index = pc.fill_null(pc.index_in(rows["_kafka_partition"], value_set=partitions), len(positions))
    mask: pa.ChunkedArray = pc.less(rows["_kafka_offset"], pc.take(limits, index))
    return mask
