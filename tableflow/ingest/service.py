"""The set of table workers and every change to it: started with the app, stopped (and flushed) with it.

Tables come from two places. The config file is declarative: its tables run at every start and cannot be
changed at runtime. Tables created through the management API are persisted (``TableStore``) and come back
at every start. When both define one identifier the file wins. Changes run under one lock, so two API calls
never race on a table; reads (status, progress) do not take it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from pyarrow.fs import FileSelector
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException, NoSuchTableError
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table

from tableflow.config import KafkaSettings, Settings, TableSettings
from tableflow.errors import BrokerError, CommitError, TableflowError
from tableflow.ingest.commit import DLQ_SUFFIX, MANAGED_PROPERTY, TOPIC_PROPERTY
from tableflow.ingest.status import Progress, State, TableStatus, Watermarks, table_progress
from tableflow.ingest.worker import TableWorker
from tableflow.lake import state_engine
from tableflow.schema.registry import SchemaSource
from tableflow.tables_store import TableExistsError, TableStore

log = logging.getLogger(__name__)

Source = Literal["file", "api"]
_PAUSE_WAIT_S = 30.0  # a pause commits the buffer first
_RESUME_WAIT_S = 5.0
_KAFKA_TIMEOUT_S = 5.0
_PROPERTY_ATTEMPTS = 5


class TableNotFoundError(TableflowError):
    """No table with this identifier is ingested."""


class FileOwnedError(TableflowError):
    """The table comes from the config file, which is the only place to change it."""


class TopicError(TableflowError):
    """Kafka refuses the topic itself: an invalid name, or no permission to describe it."""


class TopicNotFoundError(TopicError):
    """The table's topic does not exist and the caller did not ask to create it."""


class TopicCreationError(TopicError):
    """Kafka refused to create the topic (partitions, replication factor, permissions)."""


class Topics:
    """Topic metadata and watermarks on the service's own Kafka client, never on a worker's consumer."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._lock = threading.Lock()
        self._consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            # Never subscribes, so it joins no group; librdkafka wants a group.id anyway.
            self._consumer = Consumer({**self._kafka.client_config(), "group.id": "tableflow.metadata"})
        return self._consumer

    def partitions(self, topic: str) -> list[int] | None:
        """The topic's partitions, or None if it does not exist; BrokerError if Kafka does not answer."""
        with self._lock:
            try:
                metadata = self._client().list_topics(topic, timeout=_KAFKA_TIMEOUT_S).topics.get(topic)
            except KafkaException as exc:
                raise BrokerError(f"cannot reach Kafka at {self._kafka.bootstrap_servers}: {exc}") from exc
        if metadata is None:
            return None
        if metadata.error is not None:
            if metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                return None
            raise TopicError(f"Kafka refuses topic {topic!r}: {metadata.error.str()}; check its name and the ACLs")
        return sorted(metadata.partitions)

    def watermarks(self, topic: str) -> Watermarks | None:
        """(low, high) per partition; None when Kafka does not answer, so a slow broker only hides the lag."""
        try:
            partitions = self.partitions(topic) or []
            with self._lock:
                client = self._client()
                return {
                    p: client.get_watermark_offsets(TopicPartition(topic, p), timeout=_KAFKA_TIMEOUT_S)
                    for p in partitions
                }
        except (TableflowError, KafkaException) as exc:
            log.debug("watermarks of %s unavailable: %s", topic, exc)
            return None

    def create(self, topic: str, partitions: int, replication_factor: int) -> None:
        """Create the topic; one that exists already is fine (another caller was first)."""
        admin = AdminClient(self._kafka.client_config())
        future = admin.create_topics([NewTopic(topic, partitions, replication_factor)])[topic]
        try:
            future.result(timeout=30)
        except TimeoutError as exc:
            raise BrokerError(f"Kafka did not create topic {topic!r} within 30s; is it reachable?") from exc
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return
            raise TopicCreationError(
                f"Kafka refused to create topic {topic!r}: {error}; check partitions and replication_factor"
            ) from exc
        log.info("created topic %s (%d partitions)", topic, partitions)

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


@dataclass(frozen=True)
class ManagedTable:
    worker: TableWorker
    source: Source

    @property
    def settings(self) -> TableSettings:
        return self.worker.table


class Ingestor:
    """Owns every table worker of this process; the management API's operations are its methods."""

    def __init__(self, settings: Settings, catalog: Catalog, source: SchemaSource) -> None:
        self.settings = settings
        self.catalog = catalog
        self.source = source
        self.store = TableStore(state_engine(settings, catalog))
        self.topics = Topics(settings.kafka)
        self._tables: dict[str, ManagedTable] = {}
        self.paused: set[str] = set()
        """Tables an operator paused (as opposed to suspended by an error)."""
        self._lock = threading.Lock()

    def start(self) -> None:
        """The config file's tables, then the API's; an identifier in both runs as the file says."""
        for table in self.settings.tables:
            self._run(table, "file")
        for stored in self.store.entries():
            identifier = stored.settings.identifier
            if identifier in self._tables:
                log.warning(
                    "table %s is defined in the config file and was also created through the API; the config "
                    "file wins (remove it from the file to manage it through the API again)",
                    identifier,
                )
                continue
            self._run(stored.settings, "api", paused=stored.paused)

    def _run(self, table: TableSettings, source: Source, paused: bool = False) -> ManagedTable:
        worker = TableWorker(self.settings, table, self.catalog, self.source)
        if paused:
            worker.pause()
            self.paused.add(table.identifier)
        managed = self._tables[table.identifier] = ManagedTable(worker, source)
        worker.start()
        log.info("ingesting topic %s into %s (%s, from %s)", table.topic, table.identifier, table.format, source)
        return managed

    # -- reads ---------------------------------------------------------------------------------------

    @property
    def workers(self) -> dict[str, TableWorker]:
        return {identifier: table.worker for identifier, table in list(self._tables.items())}

    def tables(self) -> list[ManagedTable]:
        """Every table, by identifier."""
        return [table for _, table in sorted(list(self._tables.items()))]

    def get(self, identifier: str) -> ManagedTable:
        table = self._tables.get(identifier)
        if table is None:
            raise TableNotFoundError(f"no table {identifier!r} is configured; GET /api/v1/tables lists the tables")
        return table

    def statuses(self) -> list[TableStatus]:
        return [table.worker.status for table in self.tables()]

    def progress(self, settings: TableSettings) -> Progress:
        """Positions and snapshot read from the table now, against the topic's watermarks now."""
        try:
            table: Table | None = self.catalog.load_table(settings.identifier)
        except NoSuchTableError:
            table = None  # the worker has not created it yet
        return table_progress(table, settings.topic, self.topics.watermarks(settings.topic))

    # -- changes -------------------------------------------------------------------------------------

    def create(
        self, table: TableSettings, create_topic: bool = False, partitions: int = 1, replication_factor: int = -1
    ) -> ManagedTable:
        """Persist an API table and start ingesting it (creating its topic first if asked)."""
        with self._lock:
            if table.identifier in self._tables:
                raise TableExistsError(
                    f"table {table.identifier!r} already exists (from the {self._tables[table.identifier].source}); "
                    "choose another 'table', or PATCH the existing one"
                )
            self._check_catalog(table)
            if self.topics.partitions(table.topic) is None:
                if not create_topic:
                    raise TopicNotFoundError(
                        f"topic {table.topic!r} does not exist in Kafka; create it first, "
                        'or send "create_topic": true (with "partitions")'
                    )
                self.topics.create(table.topic, partitions, replication_factor)
            self.store.insert(table)
            return self._run(table, "api")

    def update(self, identifier: str, changes: Mapping[str, Any]) -> ManagedTable:
        """Validate the changed config as a whole, apply table properties, restart the worker with it.

        The old worker commits its buffer when it stops; the new one resumes from the table's positions.
        """
        with self._lock:
            current = self._api_owned(identifier)
            old = current.settings
            new = TableSettings.model_validate({**old.model_dump(exclude_unset=True), **changes})
            current.worker.stop()  # first, so it cannot create the table with the old properties meanwhile
            settings = old
            try:
                self._apply_properties(old, new)
                self.store.update(new)
                settings = new
            finally:  # on failure the table keeps ingesting with its old settings
                managed = self._run(settings, "api", paused=identifier in self.paused)
            return managed

    def pause(self, identifier: str) -> ManagedTable:
        """Commit what is buffered and stop consuming; returns once the worker has done so."""
        with self._lock:
            table = self.get(identifier)
            table.worker.pause()
            self.paused.add(identifier)
            if table.source == "api":
                self.store.set_paused(identifier, True)
        _wait_while(table.worker, ("running",), _PAUSE_WAIT_S)
        return table

    def resume(self, identifier: str) -> ManagedTable:
        """Resume a paused or suspended table from the table's positions."""
        with self._lock:
            table = self.get(identifier)
            table.worker.resume()
            self.paused.discard(identifier)
            if table.source == "api":
                self.store.set_paused(identifier, False)
        _wait_while(table.worker, ("paused", "suspended"), _RESUME_WAIT_S)
        return table

    def delete(self, identifier: str, purge: bool = False) -> None:
        """Stop ingesting (the buffer is committed first); ``purge`` also drops the table, its DLQ and files."""
        with self._lock:
            self._api_owned(identifier).worker.stop()
            del self._tables[identifier]
            self.paused.discard(identifier)
            self.store.delete(identifier)
            if purge:
                for name in (identifier, f"{identifier}{DLQ_SUFFIX}"):
                    self._purge(name)

    def stop(self) -> None:
        workers = [table.worker for table in self.tables()]
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.stop()
        self.topics.close()

    # -- helpers -------------------------------------------------------------------------------------

    def _api_owned(self, identifier: str) -> ManagedTable:
        table = self.get(identifier)
        if table.source == "file":
            raise FileOwnedError(
                f"table {identifier!r} is defined in the config file, which owns it; change or remove it there "
                "and restart the service (pause and resume work on it)"
            )
        return table

    def _check_catalog(self, table: TableSettings) -> None:
        """A table already in the catalog is continued only if it is Tableflow's table for the same topic."""
        try:
            existing = self.catalog.load_table(table.identifier)
        except NoSuchTableError:
            return
        props = existing.properties
        if props.get(MANAGED_PROPERTY) != "true" or props.get(TOPIC_PROPERTY) != table.topic:
            raise TableExistsError(
                f"table {table.identifier!r} already exists in the catalog and is not Tableflow's table for topic "
                f"{table.topic!r}; choose another 'table'"
            )

    def _apply_properties(self, old: TableSettings, new: TableSettings) -> None:
        """Properties live in the Iceberg table: set the changed ones, drop overrides that were removed."""
        wanted, had = new.table_properties, old.table_properties
        changed = {key: value for key, value in wanted.items() if had.get(key) != value}
        removed = [key for key in had if key not in wanted]
        if not changed and not removed:
            return
        for _ in range(_PROPERTY_ATTEMPTS):
            try:
                tx = self.catalog.load_table(new.identifier).transaction()
            except NoSuchTableError:
                return  # the worker creates it with the new properties
            if changed:
                tx.set_properties(changed)
            if removed:
                tx.remove_properties(*removed)
            try:
                tx.commit_transaction()
                return
            except CommitFailedException:
                continue  # another process committed first; apply on the fresh metadata
        raise CommitError(f"{new.identifier}: table properties lost {_PROPERTY_ATTEMPTS} commit races; retry")

    def _purge(self, identifier: str) -> None:
        """Drop the table and delete its files, including those of expired snapshots the metadata forgot."""
        try:
            table = self.catalog.load_table(identifier)
        except NoSuchTableError:
            return
        self.catalog.purge_table(identifier)
        io = table.io
        if isinstance(io, PyArrowFileIO):
            scheme, netloc, root = io.parse_location(table.location(), io.properties)
            fs = io.fs_by_scheme(scheme, netloc)
            for folder in ("data", "metadata"):
                with contextlib.suppress(FileNotFoundError):
                    fs.delete_dir(f"{root}/{folder}")
            with contextlib.suppress(OSError):
                if not fs.get_file_info(FileSelector(root)):
                    fs.delete_dir(root)
        log.info("purged table %s", identifier)


def _wait_while(worker: TableWorker, states: tuple[State, ...], timeout_s: float) -> None:
    """Give the worker's loop (which applies pause and resume between polls) time to leave ``states``."""
    deadline = time.monotonic() + timeout_s
    while worker.status.state in states and time.monotonic() < deadline:
        time.sleep(0.05)
