"""What a table's worker reports, and how far behind the topic its table is: read by the API, metrics and logs.

``TableStatus`` holds counters the worker updates as it goes (since this process started). ``Progress`` is
computed on demand from the table itself (its offset map and current snapshot) and the topic's watermarks,
so it is right even after a restart or when another process commits some of the partitions.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pyiceberg.table import Table

from tableflow import offsets as om

State = Literal["starting", "running", "paused", "suspended", "failed", "stopped"]
STATES: tuple[State, ...] = ("starting", "running", "paused", "suspended", "failed", "stopped")

COMMIT_SECONDS_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds of the commit duration histogram (seconds); commits take tens of milliseconds to seconds."""


@dataclass(frozen=True)
class ErrorInfo:
    message: str
    at: datetime
    partition: int | None = None
    offset: int | None = None


@dataclass
class Durations:
    """A fixed-bucket histogram, kept beside the other counters so metrics read one object per table."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(COMMIT_SECONDS_BUCKETS) + 1))
    sum: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(COMMIT_SECONDS_BUCKETS, seconds)] += 1
        self.sum += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """Prometheus buckets: ``(le, observations <= le)``, ending with ``+Inf``."""
        bounds = [*(str(b) for b in COMMIT_SECONDS_BUCKETS), "+Inf"]
        total, buckets = 0, []
        for bound, count in zip(bounds, self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


@dataclass
class TableStatus:
    """Counters since this process started; positions are the table's, read back after each commit."""

    identifier: str
    topic: str
    state: State = "starting"
    committed: dict[int, int] = field(default_factory=dict)
    records_total: int = 0
    bytes_total: int = 0
    dlq_records_total: int = 0
    skipped_total: int = 0
    commits_total: int = 0
    errors_total: int = 0
    commit_seconds: Durations = field(default_factory=Durations)
    last_commit_at: datetime | None = None
    last_commit_duration_s: float | None = None
    last_snapshot_id: int | None = None
    last_error: ErrorInfo | None = None


@dataclass(frozen=True)
class PartitionProgress:
    """One partition: the table's next offset (None: nothing committed yet), the topic's end, the gap."""

    partition: int
    committed_offset: int | None
    high_watermark: int | None
    lag: int | None


@dataclass(frozen=True)
class Progress:
    """How far the table is behind its topic; ``lag`` is None when the broker did not answer."""

    partitions: list[PartitionProgress]
    lag: int | None
    last_commit_at: datetime | None
    last_snapshot_id: int | None


Watermarks = dict[int, tuple[int, int]]
"""partition -> (low, high) watermark of a topic."""


def table_progress(table: Table | None, topic: str, watermarks: Watermarks | None) -> Progress:
    """Lag per partition: from the table's position (or the low watermark if it has none) to the high watermark."""
    committed = om.table_offsets(table).get(topic, {}) if table is not None else {}
    ends = watermarks or {}
    partitions = []
    for partition in sorted(committed.keys() | ends.keys()):
        position = committed.get(partition)
        if partition not in ends:
            partitions.append(PartitionProgress(partition, position, None, None))
            continue
        low, high = ends[partition]
        start = low if position is None else max(low, position)
        partitions.append(PartitionProgress(partition, position, high, max(0, high - start)))
    known = [p.lag for p in partitions if p.lag is not None]
    snapshot = table.current_snapshot() if table is not None else None
    return Progress(
        partitions,
        sum(known) if watermarks is not None and len(known) == len(partitions) else None,
        datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC) if snapshot is not None else None,
        snapshot.snapshot_id if snapshot is not None else None,
    )
