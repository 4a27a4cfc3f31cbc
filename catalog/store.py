"""The catalog database behind the REST API: namespaces, tables, and commits as compare-and-swap.

This is the same pyiceberg ``SqlCatalog`` (same database, same ``iceberg_tables`` rows) the ingest pipeline
writes through, so every ingested topic is a table here and every commit here is visible to the pipeline.

Commit order, for one table or a transaction over several:

1. Load each table's current metadata and check its requirements (``TableRequirement.validate``).
2. Apply the updates with pyiceberg's ``update_table_metadata`` (through ``_update_and_stage_table``).
3. Write every new metadata file. A failure here commits nothing (503, retryable).
4. In ONE database transaction, swap each table's ``metadata_location`` from the version loaded in step 1
   to the new file (``UPDATE ... WHERE metadata_location = <loaded>``). Any row that moved meanwhile rolls
   back the whole transaction: 409 ``CommitFailedException``, the client refreshes and retries. Only a
   failure of the database COMMIT itself leaves the outcome unknown (500 ``CommitStateUnknownException``).

Metadata files are immutable, so parsed metadata is cached by location: a ``loadTable`` is one indexed query.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyiceberg.exceptions as ice
from pyiceberg.catalog import PropertiesUpdateSummary
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.io import FileIO, load_file_io
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.serializers import FromInputFile
from pyiceberg.table import Table
from pyiceberg.table.locations import load_location_provider
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.table.update import (
    AssertCreate,
    RemovePropertiesUpdate,
    SetPropertiesUpdate,
    TableRequirement,
    TableUpdate,
)
from pyiceberg.typedef import Identifier
from sqlalchemy import Update, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from catalog.errors import (
    AlreadyExistsError,
    BadRequestError,
    CommitFailedError,
    CommitStateUnknownError,
    ForbiddenError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    ServiceUnavailableError,
)
from catalog.models import CreateTableRequest
from tableflow.config import Settings

logger = logging.getLogger(__name__)

MANAGED_PROPERTY = "tableflow.managed"
TOPIC_PROPERTY = "tableflow.topic"
# pyiceberg's SqlCatalog stores this marker for namespaces created without properties; it is not user data.
_EXISTS_MARKER = "exists"
_S3_SCHEMES = ("s3://", "s3a://", "s3n://")
_MAX_NAME = 255
_MAX_VALUE = 1000
# What pyiceberg raises when client-supplied metadata or updates do not fit together.
_INVALID_INPUT = (ValueError, KeyError, TypeError, AttributeError, IndexError, ice.ValidationError)


@dataclass(frozen=True)
class LoadedTable:
    """A table as the API returns it; ``metadata_location`` is None for a staged create."""

    identifier: Identifier
    metadata_location: str | None
    metadata: TableMetadata
    metadata_json: str


@dataclass(frozen=True)
class TableChange:
    identifier: Identifier
    requirements: tuple[TableRequirement, ...]
    updates: tuple[TableUpdate, ...]


@dataclass(frozen=True)
class _Staged:
    identifier: Identifier
    base_location: str | None
    new_location: str
    metadata: TableMetadata
    io: FileIO


class _MetadataCache:
    """Parsed metadata (and its JSON) by file location; safe because metadata files never change."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[TableMetadata, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, location: str) -> tuple[TableMetadata, str] | None:
        with self._lock:
            entry = self._entries.get(location)
            if entry is not None:
                self._entries.move_to_end(location)
            return entry

    def put(self, location: str, metadata: TableMetadata) -> tuple[TableMetadata, str]:
        entry = (metadata, metadata.model_dump_json())
        with self._lock:
            self._entries[location] = entry
            self._entries.move_to_end(location)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return entry


def check_namespace(levels: Sequence[str]) -> Identifier:
    """A namespace the SQL catalog can store: it joins levels with '.', so a level may not contain one."""
    if not levels:
        raise BadRequestError("namespace must have at least one level")
    for level in levels:
        if not level or any(ch in level for ch in "./\x1f\x00"):
            raise BadRequestError(
                f"namespace level {level!r} is invalid: levels must be non-empty and must not contain "
                "'.', '/', NUL or the 0x1F separator (send nested namespaces as separate levels)"
            )
    if len(".".join(levels)) > _MAX_NAME:
        raise BadRequestError(f"namespace {'.'.join(levels)!r} is longer than {_MAX_NAME} characters")
    return tuple(levels)


def check_table_name(name: str) -> str:
    if not name or "/" in name or "\x00" in name or len(name) > _MAX_NAME:
        raise BadRequestError(
            f"table name {name!r} is invalid: it must be 1 to {_MAX_NAME} characters without '/' or NUL"
        )
    return name


def _check_properties(properties: dict[str, str]) -> None:
    for key, value in properties.items():
        if not key or len(key) > _MAX_NAME or len(value) > _MAX_VALUE or "\x00" in key + value:
            raise BadRequestError(
                f"property {key[:40]!r} is invalid: keys must be 1 to {_MAX_NAME} characters and values "
                f"at most {_MAX_VALUE}, without NUL"
            )


def _lenient_removals(base: dict[str, str], updates: Iterable[TableUpdate]) -> tuple[TableUpdate, ...]:
    """Drop removals of absent properties: the spec (and Java) ignore them, pyiceberg raises KeyError."""
    present = set(base)
    result: list[TableUpdate] = []
    for change in updates:
        if isinstance(change, RemovePropertiesUpdate):
            kept = [key for key in change.removals if key in present]
            present -= set(kept)
            result.append(RemovePropertiesUpdate(removals=kept))
            continue
        if isinstance(change, SetPropertiesUpdate):
            present |= set(change.updates)
        result.append(change)
    return tuple(result)


def _name(identifier: Identifier) -> str:
    return ".".join(identifier)


class CatalogStore:
    """Catalog operations over a pyiceberg SqlCatalog, with the REST API's validation and error semantics."""

    def __init__(self, catalog: SqlCatalog, settings: Settings, cache_size: int = 512) -> None:
        self._catalog = catalog
        self._settings = settings
        self._engine = catalog.engine
        self._io = load_file_io(catalog.properties, catalog.properties.get("warehouse"))
        self._cache = _MetadataCache(cache_size)
        # SQLite has one writer at a time and its busy handler sleeps in coarse steps; queueing this process's
        # swaps on a lock instead keeps commit latency flat. Other databases lock per row and need no help.
        self._swap_lock: threading.Lock | None = threading.Lock() if self._engine.dialect.name == "sqlite" else None

    @property
    def warehouse(self) -> str | None:
        return self._catalog.properties.get("warehouse")

    # Namespaces

    def list_namespaces(self, parent: Identifier) -> list[Identifier]:
        try:
            found = self._catalog.list_namespaces(parent)
        except ice.NoSuchNamespaceError as exc:
            raise NoSuchNamespaceError(f"parent namespace {_name(parent)!r} does not exist") from exc
        return sorted(found)

    def namespace_exists(self, namespace: Identifier) -> bool:
        return self._catalog.namespace_exists(namespace)

    def create_namespace(self, namespace: Identifier, properties: dict[str, str]) -> dict[str, str]:
        _check_properties(properties)
        properties = dict(properties)
        if "location" not in properties and (location := self._default_namespace_location(namespace)):
            properties["location"] = location
        try:
            self._catalog.create_namespace(namespace, properties)
        except (ice.NamespaceAlreadyExistsError, IntegrityError) as exc:
            raise AlreadyExistsError(f"namespace {_name(namespace)!r} already exists") from exc
        return properties

    def load_namespace(self, namespace: Identifier) -> dict[str, str]:
        try:
            properties = dict(self._catalog.load_namespace_properties(namespace))
        except ice.NoSuchNamespaceError as exc:
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist") from exc
        if properties.get(_EXISTS_MARKER) == "true":
            del properties[_EXISTS_MARKER]
        if "location" not in properties and (location := self._default_namespace_location(namespace)):
            properties["location"] = location
        return properties

    def update_namespace(
        self, namespace: Identifier, removals: list[str], updates: dict[str, str]
    ) -> PropertiesUpdateSummary:
        _check_properties(updates)
        overlap = set(removals) & set(updates)
        if overlap:
            raise BadRequestError(f"properties {sorted(overlap)} are both updated and removed; pick one")
        try:
            return self._catalog.update_namespace_properties(namespace, set(removals), updates)
        except ice.NoSuchNamespaceError as exc:
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist") from exc

    def drop_namespace(self, namespace: Identifier) -> None:
        if not self._catalog.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist")
        tables = self._catalog.list_tables(namespace)
        children = self._catalog.list_namespaces(namespace)
        if tables or children:
            raise NamespaceNotEmptyError(
                f"namespace {_name(namespace)!r} is not empty: it holds {len(tables)} table(s) and "
                f"{len(children)} namespace(s); drop those first"
            )
        try:
            self._catalog.drop_namespace(namespace)
        except ice.NamespaceNotEmptyError as exc:
            raise NamespaceNotEmptyError(str(exc)) from exc

    def _default_namespace_location(self, namespace: Identifier) -> str | None:
        warehouse = self.warehouse
        return f"{warehouse.rstrip('/')}/{_name(namespace)}" if warehouse else None

    # Tables

    def list_tables(self, namespace: Identifier) -> list[Identifier]:
        try:
            return sorted(self._catalog.list_tables(namespace))
        except ice.NoSuchNamespaceError as exc:
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist") from exc

    def load_table(self, identifier: Identifier) -> LoadedTable:
        loaded = self._find(identifier)
        if loaded is None:
            raise NoSuchTableError(f"table {_name(identifier)!r} does not exist")
        return loaded

    def table_exists(self, identifier: Identifier) -> bool:
        return self._current_location(identifier) is not None

    def create_table(self, namespace: Identifier, request: CreateTableRequest) -> LoadedTable:
        """Create a table, or with ``stage-create`` only describe it: nothing is written until its commit."""
        name = check_table_name(request.name)
        _check_properties(request.properties)
        identifier = (*namespace, name)
        if not self._catalog.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist; create it first")
        if self._current_location(identifier) is not None:
            raise AlreadyExistsError(f"table {_name(identifier)!r} already exists")
        try:
            location = self._catalog._resolve_table_location(request.location, _name(namespace), name)
            metadata = new_table_metadata(
                location=location,
                schema=request.table_schema,
                partition_spec=request.partition_spec or UNPARTITIONED_PARTITION_SPEC,
                sort_order=request.write_order or UNSORTED_SORT_ORDER,
                properties=request.properties,
            )
        except _INVALID_INPUT as exc:
            raise BadRequestError(f"cannot create table {_name(identifier)!r}: {exc}") from exc
        if request.stage_create:
            return LoadedTable(identifier, None, metadata, metadata.model_dump_json())
        metadata_location = load_location_provider(location, metadata.properties).new_table_metadata_file_location()
        io = self._table_io(metadata, metadata_location)
        self._write(metadata, io, metadata_location)
        try:
            with Session(self._engine) as session:
                session.execute(
                    insert(IcebergTables).values(
                        **self._catalog._create_table_row(_name(namespace), name, metadata_location)
                    )
                )
                session.commit()
        except IntegrityError as exc:
            self._discard(io, [metadata_location])
            raise AlreadyExistsError(f"table {_name(identifier)!r} already exists") from exc
        return self._remember(identifier, metadata_location, metadata)

    def commit(self, changes: Sequence[TableChange]) -> list[LoadedTable]:
        """Apply each change and swap all tables in one database transaction (see the module docstring)."""
        identifiers = [change.identifier for change in changes]
        if len(set(identifiers)) != len(identifiers):
            raise BadRequestError("a transaction may change each table only once; merge the changes per table")
        results: dict[Identifier, LoadedTable] = {}
        staged: list[_Staged] = []
        for change in changes:
            current = self._find(change.identifier)
            step = self._stage(change, current)
            if step is None:
                assert current is not None
                results[change.identifier] = current
            else:
                staged.append(step)
        written: list[_Staged] = []
        try:
            for step in staged:
                self._write(step.metadata, step.io, step.new_location)
                written.append(step)
        except ServiceUnavailableError:
            self._discard_staged(written)
            raise
        self._swap(staged)
        for step in staged:
            results[step.identifier] = self._remember(step.identifier, step.new_location, step.metadata)
        return [results[identifier] for identifier in identifiers]

    def drop_table(self, identifier: Identifier, purge: bool) -> None:
        current = self.load_table(identifier)
        self._check_writable(current)
        try:
            if purge:
                self._catalog.purge_table(identifier)
            else:
                self._catalog.drop_table(identifier)
        except ice.NoSuchTableError as exc:
            raise NoSuchTableError(f"table {_name(identifier)!r} does not exist") from exc

    def rename_table(self, source: Identifier, destination: Identifier) -> None:
        current = self.load_table(source)
        self._check_writable(current)
        if not self._catalog.namespace_exists(destination[:-1]):
            raise NoSuchNamespaceError(f"target namespace {_name(destination[:-1])!r} does not exist")
        if self._current_location(destination) is not None:
            raise AlreadyExistsError(f"table {_name(destination)!r} already exists")
        try:
            self._catalog.rename_table(source, destination)
        except ice.NoSuchTableError as exc:
            raise NoSuchTableError(f"table {_name(source)!r} does not exist") from exc
        except ice.TableAlreadyExistsError as exc:
            raise AlreadyExistsError(f"table {_name(destination)!r} already exists") from exc

    def register_table(self, identifier: Identifier, metadata_location: str, overwrite: bool) -> LoadedTable:
        """Point a table at an existing metadata file (validated by reading it before anything is stored)."""
        namespace, name = identifier[:-1], identifier[-1]
        if not self._catalog.namespace_exists(namespace):
            raise NoSuchNamespaceError(f"namespace {_name(namespace)!r} does not exist; create it first")
        try:
            metadata = self._read(metadata_location)
        except Exception as exc:  # any unreadable file is the caller's bad location
            raise BadRequestError(
                f"cannot read table metadata at {metadata_location!r} ({type(exc).__name__}: {exc}); "
                "metadata-location must be a metadata.json file this server can read"
            ) from exc
        current = self._find(identifier)
        with Session(self._engine) as session:
            if current is None:
                row = self._catalog._create_table_row(_name(namespace), name, metadata_location)
                try:
                    session.execute(insert(IcebergTables).values(**row))
                except IntegrityError as exc:
                    raise AlreadyExistsError(f"table {_name(identifier)!r} already exists") from exc
            elif not overwrite:
                raise AlreadyExistsError(
                    f"table {_name(identifier)!r} already exists; send overwrite=true to re-point it"
                )
            else:
                self._check_writable(current)
                assert current.metadata_location is not None
                result = session.execute(self._cas(identifier, current.metadata_location, metadata_location))
                if result.rowcount < 1:  # type: ignore[attr-defined]
                    raise CommitFailedError(f"table {_name(identifier)!r} changed while it was being re-registered")
            session.commit()
        return self._remember(identifier, metadata_location, metadata)

    def storage_config(self, location: str) -> dict[str, str]:
        """What a client needs to reach the table's files: S3 settings when configured, else nothing."""
        if not location.startswith(_S3_SCHEMES):
            return {}
        props = self._catalog.properties
        config = {key: props[key] for key in ("s3.endpoint", "s3.path-style-access") if props.get(key)}
        if region := props.get("s3.region") or props.get("client.region"):
            config["s3.region"] = region
            config["client.region"] = region
        if props.get("s3.access-key-id") and props.get("s3.secret-access-key"):
            config["s3.access-key-id"] = props["s3.access-key-id"]
            config["s3.secret-access-key"] = props["s3.secret-access-key"]
            if token := props.get("s3.session-token"):
                config["s3.session-token"] = token
        return config

    # Internals

    def _current_location(self, identifier: Identifier) -> str | None:
        stmt = select(IcebergTables.metadata_location).where(
            IcebergTables.catalog_name == self._catalog.name,
            IcebergTables.table_namespace == _name(identifier[:-1]),
            IcebergTables.table_name == identifier[-1],
        )
        if (type_filter := self._catalog._iceberg_type_filter()) is not None:
            stmt = stmt.where(type_filter)
        with Session(self._engine) as session:
            return session.execute(stmt).scalar_one_or_none()

    def _find(self, identifier: Identifier) -> LoadedTable | None:
        location = self._current_location(identifier)
        if location is None:
            return None
        entry = self._cache.get(location)
        if entry is None:
            try:
                metadata = self._read(location)
            except FileNotFoundError as exc:
                raise ServiceUnavailableError(
                    f"table {_name(identifier)!r} points at missing metadata file {location}"
                ) from exc
            except OSError as exc:
                raise ServiceUnavailableError(f"cannot read metadata of {_name(identifier)!r}: {exc}") from exc
            entry = self._cache.put(location, metadata)
        return LoadedTable(identifier, location, *entry)

    def _read(self, location: str) -> TableMetadata:
        return FromInputFile.table_metadata(self._io.new_input(location))

    def _remember(self, identifier: Identifier, location: str, metadata: TableMetadata) -> LoadedTable:
        return LoadedTable(identifier, location, *self._cache.put(location, metadata))

    def _table_io(self, metadata: TableMetadata, location: str) -> FileIO:
        return self._catalog._load_file_io(metadata.properties, location)

    def _check_writable(self, table: LoadedTable) -> None:
        if self._settings.rest_catalog.ingested_tables_writable:
            return
        properties = table.metadata.properties
        if properties.get(MANAGED_PROPERTY, "").lower() == "true":
            topic = properties.get(TOPIC_PROPERTY, "?")
            raise ForbiddenError(
                f"table {_name(table.identifier)!r} is ingested by Tableflow from topic {topic!r} and is "
                "read-only for other writers; set rest_catalog.ingested_tables_writable: true in the "
                "service config to allow outside commits"
            )

    def _stage(self, change: TableChange, current: LoadedTable | None) -> _Staged | None:
        """New metadata for one change, or None when it changes nothing."""
        identifier = change.identifier
        if current is None:
            if not any(isinstance(req, AssertCreate) for req in change.requirements):
                raise NoSuchTableError(f"table {_name(identifier)!r} does not exist")
            check_namespace(identifier[:-1])
            check_table_name(identifier[-1])
            if not self._catalog.namespace_exists(identifier[:-1]):
                raise NoSuchNamespaceError(f"namespace {_name(identifier[:-1])!r} does not exist")
        else:
            self._check_writable(current)
        base_properties = dict(current.metadata.properties) if current else {}
        updates = _lenient_removals(base_properties, change.updates)
        table = None
        if current is not None:
            assert current.metadata_location is not None
            table = Table(
                identifier,
                current.metadata,
                current.metadata_location,
                self._table_io(current.metadata, current.metadata_location),
                self._catalog,
            )
        try:
            staged = self._catalog._update_and_stage_table(table, identifier, change.requirements, updates)
        except ice.CommitFailedException as exc:
            raise CommitFailedError(f"requirement failed for {_name(identifier)!r}: {exc}") from exc
        except _INVALID_INPUT as exc:
            raise BadRequestError(f"cannot apply updates to {_name(identifier)!r}: {exc}") from exc
        if current is not None and staged.metadata == current.metadata:
            return None
        return _Staged(
            identifier,
            current.metadata_location if current else None,
            staged.metadata_location,
            staged.metadata,
            staged.io,
        )

    def _write(self, metadata: TableMetadata, io: FileIO, location: str) -> None:
        try:
            self._catalog._write_metadata(metadata, io, location)
        except Exception as exc:
            raise ServiceUnavailableError(
                f"could not write table metadata to {location} ({type(exc).__name__}: {exc}); nothing was committed"
            ) from exc

    def _cas(self, identifier: Identifier, expected: str, new: str) -> Update:
        return (
            update(IcebergTables)
            .where(
                IcebergTables.catalog_name == self._catalog.name,
                IcebergTables.table_namespace == _name(identifier[:-1]),
                IcebergTables.table_name == identifier[-1],
                IcebergTables.metadata_location == expected,
            )
            .values(metadata_location=new, previous_metadata_location=expected)
        )

    def _swap(self, staged: list[_Staged]) -> None:
        if not staged:
            return
        if self._swap_lock is None:
            self._swap_in_transaction(staged)
            return
        with self._swap_lock:
            self._swap_in_transaction(staged)

    def _swap_in_transaction(self, staged: list[_Staged]) -> None:
        session = Session(self._engine)
        try:
            try:
                for step in staged:
                    if step.base_location is None:
                        row = self._catalog._create_table_row(
                            _name(step.identifier[:-1]), step.identifier[-1], step.new_location
                        )
                        session.execute(insert(IcebergTables).values(**row))
                    else:
                        result = session.execute(self._cas(step.identifier, step.base_location, step.new_location))
                        if result.rowcount < 1:  # type: ignore[attr-defined]
                            raise CommitFailedError(
                                f"table {_name(step.identifier)!r} was changed by another commit; "
                                "refresh the table and retry"
                            )
            except CommitFailedError:
                session.rollback()
                self._discard_staged(staged)
                raise
            except IntegrityError as exc:
                session.rollback()
                self._discard_staged(staged)
                raise CommitFailedError("a table in this commit was created concurrently; retry") from exc
            except SQLAlchemyError as exc:
                session.rollback()
                self._discard_staged(staged)
                raise ServiceUnavailableError(f"catalog database error, nothing was committed: {exc}") from exc
            try:
                session.commit()
            except DBAPIError as exc:
                logger.exception("catalog database COMMIT failed; outcome unknown")
                raise CommitStateUnknownError(
                    f"the catalog database failed while committing ({exc.orig}); the commit may or may not "
                    "have happened: reload the table before retrying"
                ) from exc
        finally:
            session.close()

    def _discard_staged(self, staged: Iterable[_Staged]) -> None:
        for step in staged:
            self._discard(step.io, [step.new_location])

    @staticmethod
    def _discard(io: FileIO, locations: Iterable[str]) -> None:
        for location in locations:
            try:
                io.delete(location)
            except Exception:  # cleanup of an uncommitted file is best effort
                logger.warning("could not delete uncommitted metadata file %s", location, exc_info=True)


__all__ = [
    "MANAGED_PROPERTY",
    "CatalogStore",
    "LoadedTable",
    "TableChange",
    "check_namespace",
    "check_table_name",
]
