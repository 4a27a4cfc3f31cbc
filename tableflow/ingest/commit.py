"""Committing a table's buffer: the only place that moves a table's Kafka positions.

Commit order (a crash between any two steps is safe because step 3 is the only truth):

1. Dead letters first: their own table, deduplicated by that table's offset map, so a retry after a crash
   writes each dead letter once.
2. Write the Parquet data files for everything buffered, against the table schema evolved to fit it.
3. One Iceberg commit: schema change + appended files + ``tableflow.offsets`` (the previous map with our
   partitions advanced) + expiry of old snapshots. Before it, each advanced partition's position in the table
   must still be the one our buffer started from; otherwise another process owns it (``FencedError``) and the
   batch is dropped and re-read from the table's position. A lost race is retried from a fresh table.
4. (Worker) commit the consumer group's offsets, for lag dashboards only; they are never read back.
5. (Worker) the buffer read meanwhile, which started at this buffer's end, is next; a fenced or failed commit
   drops it too, since its starting positions never reached the table.

Steps 1-3 run on the worker's commit thread, one buffer at a time.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
)
from pyiceberg.exceptions import TableAlreadyExistsError as _Exists
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table, Transaction
from pyiceberg.table.metadata import TableMetadata
from pyiceberg.table.update import TableUpdate
from pyiceberg.table.update.snapshot import ExpireSnapshots
from pyiceberg.transforms import parse_transform

from tableflow import offsets as om
from tableflow.config import TableSettings
from tableflow.errors import CommitError, FencedError
from tableflow.ingest.align import align_table
from tableflow.ingest.buffer import Buffer
from tableflow.ingest.records import METADATA_SCHEMA, VALUE_COLUMN, before
from tableflow.schema.evolution import SchemaView, evolve, field_aliases

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


class _Transaction(Transaction):
    """pyiceberg's transaction, with its staged metadata computed once per set of staged updates, and lost
    commit races left to the committer.

    ``Transaction.table_metadata`` replays and deep-copies the staged updates on every read, and one append reads
    it about 25 times: measured, a third of a commit's CPU, all of it holding the GIL the consumer needs.
    Staging replaces the ``_updates`` tuple, so a cache keyed on that tuple's identity is never stale.
    """

    _cached: tuple[tuple[TableUpdate, ...], TableMetadata] | None = None

    @property
    def table_metadata(self) -> TableMetadata:
        if self._cached is None or self._cached[0] is not self._updates:
            self._cached = (self._updates, super().table_metadata)
        return self._cached[1]

    def _rebuild_snapshot_updates(self) -> None:
        """Hand a lost race back to ``Committer._retrying`` instead of letting pyiceberg retry it.

        pyiceberg re-applies the same snapshot onto the refreshed table: with the offset map computed before the
        race (dropping the partitions the winner advanced) and without the position check (appending rows the
        winner already committed). pyiceberg still checks first whether the "lost" commit in fact landed.
        """
        raise CommitFailedException("lost the commit race; retrying from a freshly loaded table")


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
        self._view: SchemaView | None = None

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

    def reset_view(self, table: Table) -> None:
        """Check parts against ``table``'s schema from now on (see ``admit``); at every (re)start."""
        self._view = SchemaView(table)

    def admit(self, schema: pa.Schema) -> None:
        """Make sure rows of ``schema`` can join the table as the buffered parts will have evolved it:
        IncompatibleSchemaError when they cannot, so they follow the error policy instead of failing commits."""
        view = self._view
        if view is None:
            view = self._view = SchemaView(self.ensure_table())
        view.admit(schema)

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
        tx = _Transaction(table)
        files = self._write_parts(tx, table, buffer.parts)
        properties = {om.OFFSETS_KEY: om.encode(om.merge(current, {topic: advanced}))}
        snapshot = _append_files(tx, table, files, properties).current_snapshot()
        return (
            (snapshot.snapshot_id if snapshot else None),
            len(files),
            sum(f.file_size_in_bytes for f in files),
        )

    def _write_parts(self, tx: Transaction, table: Table, parts: list[pa.Table]) -> list[DataFile]:
        """Evolve the staged schema and spec to fit ``parts``, then write them as data files of that schema."""
        for schema in _distinct_schemas(parts):
            evolve(tx, schema)  # IncompatibleSchemaError (another process evolved it otherwise): re-read, re-check
        self._evolve_spec(tx)
        if not parts:
            return []
        target = tx.table_metadata.schema().as_arrow()
        aliases = field_aliases(tx.table_metadata.properties)
        data = pa.concat_tables([align_table(part, target, aliases) for part in parts])
        return list(_dataframe_to_data_files(tx.table_metadata, data, table.io))

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
            fresh = data.filter(pc.invert(before(data, held, 0)))
            files = list(_dataframe_to_data_files(table.metadata, fresh, table.io)) if fresh.num_rows else []
            moved = {p: max(o, held.get(p, -1)) for p, o in advanced.items()}
            props = {om.OFFSETS_KEY: om.encode(om.merge(current, {topic: moved}))}
            _append_files(_Transaction(table), table, files, props)
            return None, len(files), fresh.num_rows

        def load() -> Table:
            try:
                return self.catalog.load_table(self.dlq_identifier)
            except NoSuchTableError:
                return self._create(self.dlq_identifier, DLQ_SCHEMA, self._properties(None))

        return self._retrying(load, attempt)[2]

    # -- dead-letter replay (tableflow/ingest/replay.py): writes that move no position ------------------

    def append_in_place(self, pick: Callable[[Table], list[pa.Table]], properties: dict[str, str]) -> int:
        """Append the rows ``pick`` chooses from the freshly loaded table (again on every lost race, so it can
        leave out what the table holds by then), evolving the schema as ingestion does; the offset map is carried
        forward unchanged. Returns the rows appended."""

        def attempt(table: Table) -> _Outcome:
            parts = pick(table)
            if not parts:
                return None, 0, 0
            tx = _Transaction(table)
            files = self._write_parts(tx, table, parts)
            _append_files(tx, table, files, _carry_offsets(table, properties))
            return None, len(files), sum(part.num_rows for part in parts)

        return self._retrying(self.ensure_table, attempt)[2]

    def delete_dead(
        self, where: BooleanExpression, doomed: Callable[[pa.Table], pa.ChunkedArray], properties: dict[str, str]
    ) -> int:
        """Delete the dead letters ``doomed`` marks from the files ``where`` may hold them in (copy-on-write, and
        exact: pyiceberg's own delete binds an ``In`` of every offset at about 0.1 ms a row), carrying the
        dead-letter table's offset map forward (its deduplication must survive snapshot expiry). Returns the rows
        deleted."""

        def attempt(table: Table) -> _Outcome:
            reader = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
            replaced: list[DataFile] = []
            files: list[DataFile] = []
            deleted = 0
            for task in table.scan(row_filter=where).plan_files():
                rows = reader.to_table([task])
                kept = rows.filter(pc.invert(doomed(rows)))
                if kept.num_rows < rows.num_rows:
                    replaced.append(task.file)
                    files += _dataframe_to_data_files(table.metadata, kept, table.io) if kept.num_rows else []
                    deleted += rows.num_rows - kept.num_rows
            if replaced:
                _append_files(_Transaction(table), table, files, _carry_offsets(table, properties), replaced)
            return None, len(files), deleted

        return self._retrying(lambda: self.catalog.load_table(self.dlq_identifier), attempt)[2]


def _carry_offsets(table: Table, properties: dict[str, str]) -> dict[str, str]:
    """``properties`` plus ``table``'s offset map as it stands (left out while it has none, so a recorded
    ``start: latest`` position still applies)."""
    held = om.snapshot_offsets(table)
    return properties if held is None else {**properties, om.OFFSETS_KEY: om.encode(held)}


def _distinct_schemas(parts: list[pa.Table]) -> list[pa.Schema]:
    seen: list[pa.Schema] = []
    for part in parts:
        if not any(part.schema.equals(s, check_metadata=True) for s in seen):  # aliases are metadata
            seen.append(part.schema)
    return seen


def _append_files(
    tx: Transaction, table: Table, files: list[DataFile], properties: dict[str, str], replaced: Sequence[DataFile] = ()
) -> Table:
    """Commit ``files`` (in place of ``replaced``, and whatever ``tx`` staged) as one snapshot; the files go
    when the swap is lost."""
    snapshot = tx.update_snapshot(snapshot_properties=properties)
    try:
        with snapshot.overwrite() if replaced else snapshot.merge_append() as append:
            for data_file in replaced:
                append.delete_data_file(data_file)
            for data_file in files:
                append.append_data_file(data_file)
        _expire(tx)
        return tx.commit_transaction()
    except CommitFailedException:
        _delete(table, [f.file_path for f in files])
        raise


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
