"""Committing a table's buffer: the only place that moves a table's Kafka positions.

Commit order (a crash between any two steps is safe because step 2 is the only truth):

1. Dead letters first: their own table, deduplicated by that table's offset map, so a retry after a crash
   writes each dead letter once.
2. Write the Parquet data files for everything buffered, against the table schema evolved to fit it.
3. One Iceberg commit: schema change + appended files + ``tableflow.offsets`` (the previous map with our
   partitions advanced) + expiry of old snapshots. Before it, each advanced partition's position in the table
   must still be the one our buffer started from; otherwise another process owns it (``FencedError``) and the
   batch is dropped and re-read from the table's position. A lost race is retried from a fresh table.
4. (Worker) commit the consumer group's offsets, for lag dashboards only; they are never read back.
5. (Worker) clear the buffer.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    ValidationError,
)
from pyiceberg.exceptions import TableAlreadyExistsError as _Exists
from pyiceberg.io.pyarrow import _dataframe_to_data_files
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update.snapshot import ExpireSnapshots
from pyiceberg.transforms import parse_transform

from tableflow import offsets as om
from tableflow.config import TableSettings
from tableflow.errors import CommitError, FencedError
from tableflow.ingest.align import align_table
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.records import METADATA_SCHEMA, VALUE_COLUMN

log = logging.getLogger(__name__)

MANAGED_PROPERTY = "tableflow.managed"
TOPIC_PROPERTY = "tableflow.topic"
DLQ_SUFFIX = "__dlq"
DLQ_SCHEMA = pa.schema(
    [
        *METADATA_SCHEMA,
        VALUE_COLUMN,
        pa.field("error_class", pa.string(), nullable=False),
        pa.field("error_message", pa.string(), nullable=False),
        pa.field("schema_id", pa.int32()),
        pa.field("failed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
_MAX_ATTEMPTS = 12
_Outcome = tuple[int | None, int, int]
"""(snapshot id, files written, bytes or rows written) of one successful attempt."""


@dataclass(frozen=True)
class CommitResult:
    snapshot_id: int | None
    rows: int
    dead: int
    files: int
    bytes: int
    offsets: dict[int, int]
    duration_s: float


def _partition_fields(expressions: list[str]) -> list[tuple[str, str, str]]:
    """``day(_kafka_timestamp)`` → (source column, transform, partition field name)."""
    fields = []
    for expr in expressions:
        text = expr.replace(" ", "")
        if "(" in text:
            transform, source = text[:-1].split("(", 1)
        else:
            transform, source = "identity", text
        suffix = transform.replace("[", "_").replace("]", "")
        fields.append((source, transform, source if transform == "identity" else f"{source}_{suffix}"))
    return fields


class Committer:
    """Owns one table (and its dead-letter table) in the catalog for one topic."""

    def __init__(self, catalog: Catalog, settings: TableSettings, raw: bool = False) -> None:
        self.catalog = catalog
        self.settings = settings
        self.identifier = settings.identifier
        self.dlq_identifier = f"{self.identifier}{DLQ_SUFFIX}"
        self._base_schema = pa.schema([*METADATA_SCHEMA, VALUE_COLUMN]) if raw else METADATA_SCHEMA

    # -- tables -------------------------------------------------------------------------------------

    def _properties(self, initial: om.OffsetMap | None) -> dict[str, str]:
        props = {
            **self.settings.table_properties,
            MANAGED_PROPERTY: "true",
            TOPIC_PROPERTY: self.settings.topic,
        }
        if initial:
            props[om.INITIAL_OFFSETS_PROPERTY] = om.encode(initial)
        return props

    def _create(self, identifier: str, schema: pa.Schema, properties: dict[str, str]) -> Table:
        namespace = identifier.rsplit(".", 1)[0]
        with contextlib.suppress(NamespaceAlreadyExistsError):
            self.catalog.create_namespace(namespace)
        try:
            table = self.catalog.create_table(identifier, schema=schema, properties=properties)
            log.info("created table %s", identifier)
            return table
        except _Exists:
            return self.catalog.load_table(identifier)

    def ensure_table(self, initial: om.OffsetMap | None = None) -> Table:
        """Load the table, creating it (with ``initial`` start positions) when it does not exist yet."""
        try:
            return self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            return self._create(self.identifier, self._base_schema, self._properties(initial))

    def positions(self) -> dict[int, int]:
        """This topic's partitions → next offset, as the table records them (the only source of truth)."""
        return om.table_offsets(self.ensure_table()).get(self.settings.topic, {})

    # -- commit -------------------------------------------------------------------------------------

    def commit(self, buffer: Buffer) -> CommitResult:
        started = time.monotonic()
        advanced = buffer.advanced()
        dead = self._commit_dead(buffer.dead, advanced) if buffer.dead else 0
        snapshot_id, files, size = self._retrying(
            self.ensure_table, lambda table: self._attempt(table, buffer, advanced)
        )
        result = CommitResult(snapshot_id, buffer.records, dead, files, size, advanced, time.monotonic() - started)
        log.info(
            "commit table=%s rows=%d dead=%d bytes=%d files=%d offsets=%s snapshot=%s duration_ms=%.1f",
            self.identifier, result.rows, result.dead, result.bytes, result.files,
            om.encode({self.settings.topic: advanced}), snapshot_id, result.duration_s * 1000,
        )  # fmt: skip
        return result

    def _retrying(self, load: Callable[[], Table], attempt: Callable[[Table], _Outcome]) -> _Outcome:
        """Run ``attempt`` on a freshly loaded table until it wins the compare-and-swap."""
        delay = 0.05
        for number in range(1, _MAX_ATTEMPTS + 1):
            table = load()
            try:
                return attempt(table)
            except CommitFailedException as exc:
                if number == _MAX_ATTEMPTS:
                    raise CommitError(f"{table.name()}: commit lost {number} races in a row: {exc}") from exc
                log.debug("commit race on %s (attempt %d): %s", table.name(), number, exc)
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")

    def _attempt(self, table: Table, buffer: Buffer, advanced: dict[int, int]) -> _Outcome:
        topic = self.settings.topic
        current = om.table_offsets(table)
        held = current.get(topic, {})
        for partition in advanced:
            if held.get(partition) != buffer.ranges[partition].base:
                raise FencedError(topic, partition, buffer.ranges[partition].base, held.get(partition))
        tx = table.transaction()
        for schema in _distinct_schemas(buffer.parts):
            update = tx.update_schema()
            try:
                update.union_by_name(schema)
            except (ValueError, ValidationError) as exc:
                # Not a promotion Iceberg allows (e.g. double <- long): keep the table's type, cast the data.
                log.warning("%s: schema change not applied, data is cast to the table's types: %s", table.name(), exc)
                continue
            update.commit()
        self._evolve_spec(tx)
        files = []
        if buffer.parts:
            target = tx.table_metadata.schema().as_arrow()
            data = pa.concat_tables([align_table(part, target) for part in buffer.parts])
            files = list(_dataframe_to_data_files(tx.table_metadata, data, table.io))
        properties = {om.OFFSETS_KEY: om.encode(om.merge(current, {topic: advanced}))}
        try:
            with tx.update_snapshot(snapshot_properties=properties).merge_append() as append:
                for data_file in files:
                    append.append_data_file(data_file)
            _expire(tx)
            committed = tx.commit_transaction()
        except CommitFailedException:
            _delete(table, [f.file_path for f in files])
            raise
        snapshot = committed.current_snapshot()
        return (
            (snapshot.snapshot_id if snapshot else None),
            len(files),
            sum(f.file_size_in_bytes for f in files),
        )

    def _evolve_spec(self, tx: Transaction) -> None:
        """Add configured partition fields whose source column exists now (value columns appear with data)."""
        metadata = tx.table_metadata
        have = {field.name for field in metadata.spec().fields}
        columns = {field.name for field in metadata.schema().columns}
        wanted = [f for f in _partition_fields(self.settings.partition_by) if f[2] not in have and f[0] in columns]
        if wanted:
            with tx.update_spec() as spec:
                for source, transform, name in wanted:
                    spec.add_field(source, parse_transform(transform), name)

    def _commit_dead(self, parts: list[pa.Table], advanced: dict[int, int]) -> int:
        """Write dead letters once: rows below the dead-letter table's own recorded positions are skipped."""
        data = pa.concat_tables(parts)
        topic = self.settings.topic

        def attempt(table: Table) -> _Outcome:
            current = om.table_offsets(table)
            held = current.get(topic, {})
            keep = pc.greater_equal(
                data["_kafka_offset"],
                pa.array([held.get(p, -1) for p in data["_kafka_partition"].to_pylist()], pa.int64()),
            )
            fresh = data.filter(keep)
            files = list(_dataframe_to_data_files(table.metadata, fresh, table.io)) if fresh.num_rows else []
            moved = {p: max(o, held.get(p, -1)) for p, o in advanced.items()}
            tx = table.transaction()
            try:
                props = {om.OFFSETS_KEY: om.encode(om.merge(current, {topic: moved}))}
                with tx.update_snapshot(snapshot_properties=props).merge_append() as append:
                    for data_file in files:
                        append.append_data_file(data_file)
                _expire(tx)
                tx.commit_transaction()
            except CommitFailedException:
                _delete(table, [f.file_path for f in files])
                raise
            return None, len(files), fresh.num_rows

        def load() -> Table:
            try:
                return self.catalog.load_table(self.dlq_identifier)
            except NoSuchTableError:
                return self._create(self.dlq_identifier, DLQ_SCHEMA, self._properties(None))

        return self._retrying(load, attempt)[2]


def _distinct_schemas(parts: list[pa.Table]) -> list[pa.Schema]:
    seen: list[pa.Schema] = []
    for part in parts:
        if not any(part.schema.equals(s) for s in seen):
            seen.append(part.schema)
    return seen


def _expire(tx: Transaction) -> None:
    """Expire old snapshots in the same commit, in batches, so metadata (and commit cost) stays flat."""
    metadata: TableMetadata = tx.table_metadata
    props = metadata.properties
    keep = int(props.get("history.expire.min-snapshots-to-keep", "20"))
    max_age_ms = int(props.get("history.expire.max-snapshot-age-ms", str(15 * 60 * 1000)))
    snapshots = sorted(metadata.snapshots, key=lambda s: s.timestamp_ms)
    if len(snapshots) <= keep + max(5, keep // 4):
        return
    cutoff = int(datetime.now(UTC).timestamp() * 1000) - max_age_ms
    doomed = [s.snapshot_id for s in snapshots[:-keep] if s.timestamp_ms < cutoff]
    if doomed:
        ExpireSnapshots(tx).by_ids(doomed).commit()


def _delete(table: Table, paths: list[str]) -> None:
    for path in paths:
        try:
            table.io.delete(path)
        except OSError as exc:  # an orphan at worst; table maintenance removes it
            log.warning("could not delete uncommitted file %s: %s", path, exc)
