"""Re-ingesting dead letters after a fix (a schema registered late, ...): ``tableflow dlq replay``.

The dead-letter table is read a group of whole data files at a time and decoded with the table's current
decoder, the one ingestion uses. For each group, exactly once and safe beside live ingestion:

(a) Rows that decode now, lie below the table's recorded positions (so ingestion never reads them again) and
    that the table does not hold yet (a filtered scan of the table, repeated on every lost compare-and-swap) are
    appended in one commit with the ingest commit's schema evolution and alignment. The commit moves no
    position: it carries ``tableflow.offsets`` forward unchanged and is marked ``tableflow.operation=dlq-replay``.
(b) The rows the table now holds are deleted from the dead-letter table (a row-level delete by partition and
    offset that carries that table's own offset map forward).

A crash between (a) and (b) leaves rows in both tables; the next run finds them present and only deletes them.
Rows that still fail stay in the dead-letter table, untouched. Rows at or past the table's position (their
batch is still being committed) wait for a later run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import astuple, dataclass, replace
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NoSuchTableError
from pyiceberg.expressions import (
    AlwaysFalse,
    AlwaysTrue,
    And,
    BooleanExpression,
    EqualTo,
    GreaterThanOrEqual,
    LessThanOrEqual,
    Or,
)
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.table import FileScanTask, Table

from tableflow import offsets as om
from tableflow.config import Settings, TableSettings
from tableflow.ingest.commit import Committer
from tableflow.ingest.decode.factory import make_decoder
from tableflow.ingest.decode.key import KeyDecoder
from tableflow.ingest.records import METADATA_SCHEMA, before
from tableflow.ingest.service import TableNotFoundError
from tableflow.ingest.worker import admitted_rows
from tableflow.lake import open_catalog, state_engine
from tableflow.schema.registry import RemoteRegistry, SchemaSource
from tableflow.schema.store import SchemaStore
from tableflow.tables_store import TableStore

OPERATION_KEY = "tableflow.operation"
"""Snapshot summary key naming what a snapshot that is not an ingest commit did."""
REPLAY_OPERATION = "dlq-replay"
CHUNK_ROWS = 50_000
"""Dead letters per group (whole data files, so a larger file makes a larger group)."""

KEY_COLUMNS = ["_kafka_partition", "_kafka_offset"]
_KEYS = pa.schema([METADATA_SCHEMA.field(name) for name in KEY_COLUMNS])
_RANGES = 32
"""Offset ranges per partition in a scan or delete filter (see ``_ranges``)."""


@dataclass(frozen=True)
class ReplayResult:
    """Dead letters read, and what became of them (each counted once; running totals in progress reports)."""

    read: int = 0
    replayed: int = 0
    """Appended to the table (with ``dry_run``: would be)."""
    already_present: int = 0
    """The table held them already (a crash between the two steps, or ingestion decoded them on a re-read)."""
    still_failing: int = 0
    waiting: int = 0
    """Past the table's position: their batch is being committed; a later run replays them."""

    def __add__(self, other: ReplayResult) -> ReplayResult:
        return ReplayResult(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


Progress = Callable[[ReplayResult], None]


class DeadLetterReplay:
    """One table's dead letters against its decoder; ``run`` does it all, the steps are public for tests."""

    def __init__(self, catalog: Catalog, table: TableSettings, source: SchemaSource) -> None:
        self.committer = Committer(catalog, table, raw=table.format == "raw")
        self.topic = table.topic
        try:
            main = catalog.load_table(table.identifier)
            self.dead = catalog.load_table(self.committer.dlq_identifier)
        except NoSuchTableError as exc:
            raise TableNotFoundError(
                f"{table.identifier} has no dead-letter table {self.committer.dlq_identifier} in the catalog "
                "(the table has not been ingested yet, or no record has failed to decode): nothing to replay"
            ) from exc
        self.committer.reset_view(main)
        schema = main.schema().as_arrow()
        self._decoder = make_decoder(table, source, schema)
        self._keys = KeyDecoder(table.key_format, source, schema)

    def __enter__(self) -> DeadLetterReplay:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._decoder.close()
        self._keys.close()

    def run(
        self, *, dry_run: bool = False, progress: Progress | None = None, chunk_rows: int = CHUNK_ROWS
    ) -> ReplayResult:
        total = ReplayResult()
        for chunk in self.chunks(chunk_rows):
            rows, failing = self.decode(chunk)
            outcome, done = self.append(rows, dry_run=dry_run)
            if done.num_rows and not dry_run:
                self.forget(done)
            total += replace(outcome, read=chunk.num_rows, still_failing=outcome.still_failing + failing)
            if progress is not None:
                progress(total)
        return total

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """The dead letters as of now, whole data files at a time, about ``rows`` rows each."""
        snapshot = self.dead.current_snapshot()
        if snapshot is None:
            return
        metadata = self.dead.metadata
        reader = ArrowScan(metadata, self.dead.io, metadata.schema(), AlwaysTrue())
        group: list[FileScanTask] = []
        grouped = 0
        for task in self.dead.scan(snapshot_id=snapshot.snapshot_id).plan_files():
            group.append(task)
            grouped += task.file.record_count
            if grouped >= rows:
                yield reader.to_table(group)
                group, grouped = [], 0
        if group:
            yield reader.to_table(group)

    def decode(self, chunk: pa.Table) -> tuple[list[pa.Table], int]:
        """Rows that decode now and that the table can hold, with their original ``_kafka_*`` columns (one
        table per writer schema), and how many rows still fail."""
        values = self._decoder.decode(chunk["_kafka_value"].to_pylist())
        decoded = self._keys.attach(values, chunk["_kafka_key"].to_pylist())
        metadata = chunk.select(METADATA_SCHEMA.names).cast(METADATA_SCHEMA)
        admitted = admitted_rows(self.committer, decoded, metadata)
        return admitted, chunk.num_rows - sum(piece.num_rows for piece in admitted)

    def append(self, rows: list[pa.Table], *, dry_run: bool = False) -> tuple[ReplayResult, pa.Table]:
        """Step (a): append the rows the table does not hold yet; returns the counts and the keys of every row
        the table holds afterwards (appended or already there), which step (b) deletes."""
        keys = pa.concat_tables([piece.select(KEY_COLUMNS) for piece in rows]) if rows else _KEYS.empty_table()
        outcome = (ReplayResult(), keys.slice(0, 0))

        def pick(table: Table) -> list[pa.Table]:
            nonlocal outcome
            held = om.table_offsets(table).get(self.topic, {})
            present = _present(table, keys)
            counts, fresh, done = ReplayResult(), [], []
            for piece in rows:
                there = _marks(piece, present)
                settled = pc.or_(there, before(piece, held, 0))  # ingestion never reads it again
                new = pc.and_(settled, pc.invert(there))
                fresh.append(piece.filter(new))
                done.append(piece.filter(settled).select(KEY_COLUMNS))
                counts += ReplayResult(0, _count(new), _count(there), 0, piece.num_rows - _count(settled))
            outcome = (counts, pa.concat_tables(done) if done else keys)
            return [piece for piece in fresh if piece.num_rows]

        if dry_run:
            pick(self.committer.ensure_table())
        else:
            self.committer.append_in_place(pick, {OPERATION_KEY: REPLAY_OPERATION})
        return outcome

    def forget(self, keys: pa.Table) -> int:
        """Step (b): delete the rows with these keys from the dead-letter table; returns how many it held."""
        marks = functools.partial(_marks, keys=keys)
        return self.committer.delete_dead(_ranges(keys), marks, {OPERATION_KEY: REPLAY_OPERATION})


def _count(marks: pa.ChunkedArray) -> int:
    return int(pc.sum(marks, min_count=0).as_py())


def _marks(data: pa.Table, keys: pa.Table) -> pa.ChunkedArray:
    """Which rows of ``data`` have one of ``keys`` (partition, offset)."""
    marked = pa.chunked_array([pa.repeat(False, data.num_rows)])
    for partition in pc.unique(keys["_kafka_partition"]).to_pylist():
        offsets = keys.filter(pc.equal(keys["_kafka_partition"], partition))["_kafka_offset"].combine_chunks()
        hit = pc.and_(pc.equal(data["_kafka_partition"], partition), pc.is_in(data["_kafka_offset"], offsets))
        marked = pc.or_(marked, hit)
    return marked


def _ranges(keys: pa.Table) -> BooleanExpression:
    """A few offset ranges per partition that cover ``keys``, split at the largest gaps: cheap for pyiceberg to
    bind and prune files with (binding an ``In`` of every offset costs about 0.1 ms a row), taking in few rows
    besides. Callers pick the exact rows with ``_marks``."""
    terms: list[BooleanExpression] = []
    for partition in sorted(pc.unique(keys["_kafka_partition"]).to_pylist()):
        offsets = sorted(keys.filter(pc.equal(keys["_kafka_partition"], partition))["_kafka_offset"].to_pylist())
        gaps = [i for i in range(1, len(offsets)) if offsets[i] - offsets[i - 1] > 1]
        cuts = sorted(sorted(gaps, key=lambda i: offsets[i] - offsets[i - 1])[-(_RANGES - 1) :])
        for first, end in zip([0, *cuts], [*cuts, len(offsets)], strict=True):
            # pyiceberg's predicates are pydantic models: mypy sees their fields, not their constructors.
            terms.append(
                And(
                    EqualTo("_kafka_partition", partition),  # type: ignore[call-arg,arg-type]
                    GreaterThanOrEqual("_kafka_offset", offsets[first]),  # type: ignore[call-arg,arg-type]
                    LessThanOrEqual("_kafka_offset", offsets[end - 1]),  # type: ignore[call-arg,arg-type]
                )
            )
    return _any(terms)


def _any(terms: list[BooleanExpression]) -> BooleanExpression:
    """``Or`` of ``terms`` as a balanced tree: pyiceberg's visitors recurse once per level."""
    if len(terms) <= 1:
        return terms[0] if terms else AlwaysFalse()
    middle = len(terms) // 2
    return Or(_any(terms[:middle]), _any(terms[middle:]))


def _present(table: Table, keys: pa.Table) -> pa.Table:
    """The ``keys`` the table holds."""
    if not keys.num_rows or table.current_snapshot() is None:
        return keys.slice(0, 0)
    found = table.scan(row_filter=_ranges(keys), selected_fields=tuple(KEY_COLUMNS)).to_arrow()
    return found.filter(_marks(found, keys))


def find_table(settings: Settings, catalog: Catalog, identifier: str) -> TableSettings:
    """The table's settings: the config file's entry, else the one created through the management API."""
    configured = [*settings.tables, *(s.settings for s in TableStore(state_engine(settings, catalog)).entries())]
    for table in configured:
        if table.identifier == identifier:
            return table
    known = ", ".join(sorted({t.identifier for t in configured})) or "none"
    raise TableNotFoundError(
        f"no table {identifier!r} is configured (in the config file or through the management API; "
        f"configured: {known}); pass --table namespace.name as `tableflow tables list` shows it"
    )


def replay_dead_letters(
    catalog: Catalog,
    table: TableSettings,
    source: SchemaSource,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ReplayResult:
    """Replay ``table``'s dead letters: append what decodes now, then delete it from the dead-letter table."""
    with DeadLetterReplay(catalog, table, source) as replay:
        return replay.run(dry_run=dry_run, progress=progress, chunk_rows=chunk_rows)


def replay_configured(
    settings: Settings, identifier: str, *, dry_run: bool = False, progress: Progress | None = None
) -> ReplayResult:
    """Replay a configured table's dead letters against the catalog and registry ``settings`` name."""
    catalog = open_catalog(settings)
    table = find_table(settings, catalog, identifier)
    source: SchemaSource = (
        RemoteRegistry(settings.schema_registry)
        if settings.schema_registry.url
        else SchemaStore(state_engine(settings, catalog))
    )
    return replay_dead_letters(catalog, table, source, dry_run=dry_run, progress=progress)
