"""What one table holds between commits: decoded rows, dead letters, and per-partition positions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class PartitionRange:
    """``base``: the table's position when this buffer started (None: the table has none); ``next``: ours."""

    base: int | None
    next: int | None = None


@dataclass
class Buffer:
    parts: list[pa.Table] = field(default_factory=list)
    """Value columns plus ``_kafka_*`` columns, each piece in the schema it was decoded with."""
    dead: list[pa.Table] = field(default_factory=list)
    ranges: dict[int, PartitionRange] = field(default_factory=dict)
    records: int = 0
    bytes: int = 0
    started: float | None = None

    def assign(self, partition: int, base: int | None) -> None:
        self.ranges[partition] = PartitionRange(base)

    def forget(self, partitions: list[int]) -> None:
        """Drop what we hold for partitions another process now owns (never committed by us)."""
        gone = set(partitions)
        for partition in gone:
            self.ranges.pop(partition, None)
        self.parts = [_without(p, gone) for p in self.parts]
        self.dead = [_without(p, gone) for p in self.dead]

    def add(self, rows: list[pa.Table], dead: pa.Table | None, next_offsets: dict[int, int], size: int) -> None:
        if self.started is None:
            self.started = time.monotonic()
        for piece in rows:
            if piece.num_rows:
                self.parts.append(piece)
                self.records += piece.num_rows
        if dead is not None and dead.num_rows:
            self.dead.append(dead)
        self.bytes += size
        for partition, offset in next_offsets.items():
            self.ranges[partition].next = offset

    def advanced(self) -> dict[int, int]:
        """Partitions whose position moved since the last commit, with their new next offset."""
        return {p: r.next for p, r in self.ranges.items() if r.next is not None and r.next != r.base}

    def due(self, interval_s: float, max_records: int, max_bytes: int) -> bool:
        if self.started is None:
            return False
        return self.records >= max_records or self.bytes >= max_bytes or time.monotonic() - self.started >= interval_s

    def successor(self) -> Buffer:
        """An empty buffer for the same partitions that starts where this one ends, so reading goes on while
        this one is committed; its positions hold only once this one's commit has landed."""
        return Buffer(ranges={p: PartitionRange(r.base if r.next is None else r.next) for p, r in self.ranges.items()})


def _without(table: pa.Table, partitions: set[int]) -> pa.Table:
    keep = pc.invert(pc.is_in(table["_kafka_partition"], pa.array(sorted(partitions), pa.int32())))
    return table.filter(keep)
