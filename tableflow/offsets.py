"""The offset-map contract: which Kafka offsets a table already holds.

Every ingest snapshot's summary carries ``tableflow.offsets``: JSON ``{"<topic>": {"<partition>": next}}``, the
next offset to consume for every partition the table has data (or a recorded start) for. The newest snapshot that
carries the key holds the full map (each commit carries the previous map forward), so readers look at one
snapshot. Compaction's ``replace`` snapshots carry it too. A new table created with ``start: latest`` records its
start positions in the table property ``tableflow.initial-offsets`` (same JSON) until its first commit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

OFFSETS_KEY = "tableflow.offsets"
INITIAL_OFFSETS_PROPERTY = "tableflow.initial-offsets"

OffsetMap = dict[str, dict[int, int]]
"""topic -> partition -> next offset to consume."""


def encode(offsets: Mapping[str, Mapping[int, int]]) -> str:
    return json.dumps(
        {topic: {str(p): o for p, o in sorted(parts.items())} for topic, parts in sorted(offsets.items())},
        separators=(",", ":"),
    )


def decode(text: str) -> OffsetMap:
    raw = json.loads(text)
    return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in raw.items()}


def merge(base: Mapping[str, Mapping[int, int]], updates: Mapping[str, Mapping[int, int]]) -> OffsetMap:
    """``base`` with ``updates`` laid over it, partition by partition."""
    merged = {topic: dict(parts) for topic, parts in base.items()}
    for topic, parts in updates.items():
        merged.setdefault(topic, {}).update(parts)
    return merged


def snapshot_offsets(table: Table, snapshot: Snapshot | None = None) -> OffsetMap | None:
    """The map recorded at ``snapshot`` (default: the current one), walking back past snapshots without one."""
    current = snapshot or table.current_snapshot()
    while current is not None:
        if current.summary is not None:
            text = current.summary[OFFSETS_KEY]
            if text:
                return decode(text)
        if current.parent_snapshot_id is None:
            break
        current = table.snapshot_by_id(current.parent_snapshot_id)
    return None


def table_offsets(table: Table) -> OffsetMap:
    """Where ingestion resumes: the newest snapshot map, else the table's recorded start, else nothing."""
    found = snapshot_offsets(table)
    if found is not None:
        return found
    initial = table.properties.get(INITIAL_OFFSETS_PROPERTY)
    return decode(initial) if initial else {}
